"""Security group rule descriptions EC2 accepts, made visibly from what an operator typed.

EC2 allows only a-z A-Z 0-9, space and ._-:/()#,@[]+=&;{}!$* (at most 255 characters) in a
rule description; `str.isalnum` lets "Zürich" through and EC2 then refuses the whole call.
Letters lose their accents (Zürich -> Zurich, ß -> ss), angle brackets become parentheses
and anything else becomes "-", so the operator sees what will be stored, not a silent cut.
"""

from __future__ import annotations

import re
import unicodedata

ALLOWED_PUNCTUATION = " ._-:/()#,@[]+=&;{}!$*"
PATTERN = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*$")
MAX_LENGTH = 255
# Letters NFKD does not split into a base letter and a mark.
_SPECIAL = {
    "ß": "ss",
    "Æ": "AE",
    "æ": "ae",
    "Ø": "O",
    "ø": "o",
    "Œ": "OE",
    "œ": "oe",
    "Ð": "D",
    "ð": "d",
    "Þ": "Th",
    "þ": "th",
    "Ł": "L",
    "ł": "l",
    "Đ": "D",
    "đ": "d",
    "ı": "i",
    "<": "(",
    ">": ")",
    "\t": " ",
    "\n": " ",
    "\r": " ",
    "'": "",
    '"': "",
    "`": "",
    "’": "",
    "‘": "",
    "“": "",
    "”": "",
}


def allowed(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in ALLOWED_PUNCTUATION)


def ec2_safe(text: str, limit: int = MAX_LENGTH) -> str:
    """`text` in EC2's description character set, transliterated where it was not."""
    out = []
    for char in text:
        if allowed(char):
            out.append(char)
            continue
        if char in _SPECIAL:
            out.append(_SPECIAL[char])
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
        out.append(base if base and all(allowed(c) for c in base) else "-")
    return re.sub(r" {2,}", " ", "".join(out)).strip()[:limit]


def transliteration(text: str, limit: int = MAX_LENGTH) -> dict[str, object]:
    """What the page and the API show: what was typed, what EC2 gets, whether they differ."""
    safe = ec2_safe(text, limit)
    return {"typed": text, "stored": safe, "changed": safe != text}
