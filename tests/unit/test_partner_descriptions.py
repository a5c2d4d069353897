"""EC2-safe rule descriptions: what an operator types becomes text EC2 accepts, visibly.

EC2's own model has no pattern for IpRange.Description (botocore lets "Zürich" through and
EC2 refuses the call). The same character set, a-z A-Z 0-9 space and ._-:/()#,@[]+=&;{}!$*,
is in botocore as the pattern of a security group name (workspaces-instances'
SecurityGroupName): the tests hold every output to that pattern, read from botocore.
"""

from __future__ import annotations

import gzip
import json
import os
import re

import botocore
import botocore.session
from hypothesis import given, settings
from hypothesis import strategies as st

from trinity_beast.domain.partners.descriptions import PATTERN, ec2_safe, transliteration
from trinity_beast.domain.partners.model import Partner
from trinity_beast.services.partners.wizard import rule_description


def _botocore_pattern() -> re.Pattern[str]:
    root = os.path.join(os.path.dirname(botocore.__file__), "data", "workspaces-instances")
    version = sorted(os.listdir(root))[-1]
    model = json.loads(gzip.open(os.path.join(root, version, "service-2.json.gz")).read())
    pattern = model["shapes"]["SecurityGroupName"]["pattern"]
    assert "#,@" in pattern and "!$*" in pattern, pattern  # the set EC2 documents for rule descriptions
    body = pattern.removeprefix("(?!sg-)")  # names may not start with sg-; descriptions may
    return re.compile(body, re.ASCII)  # botocore's (Java) \w is ASCII


BOTOCORE = _botocore_pattern()


def test_the_ec2_model_itself_has_no_pattern_for_the_description() -> None:
    model = botocore.session.get_session().get_service_model("ec2")
    assert "pattern" not in model.shape_for("IpRange").members["Description"].metadata


def test_names_are_transliterated_visibly() -> None:
    assert ec2_safe("Zürich Quant") == "Zurich Quant"
    assert ec2_safe("<b>NOC</b>") == "(b)NOC(/b)"
    assert ec2_safe("Straße São Paulo Æon") == "Strasse Sao Paulo AEon"
    assert ec2_safe("desk 北京 #2") == "desk -- #2"
    assert ec2_safe("tabs\tand\nlines") == "tabs and lines"
    assert transliteration("Zürich Quant") == {"typed": "Zürich Quant", "stored": "Zurich Quant", "changed": True}
    assert transliteration("Acme office")["changed"] is False
    assert len(ec2_safe("x" * 400)) == 255


def test_rule_descriptions_of_partners_are_ec2_safe() -> None:
    partner = Partner(
        "pt_0123456789abcdef",
        "Zürich Quant <b>NOC</b>",
        "111122223333",
        "us-east-2",
        "peering",
        "vpc-0a1b2c3d4e5f67890",
        "172.31.0.0/16",
        (),
        (),
        "rtb-0a1b2c3d4e5f67890",
        None,
        "invited",
        None,
        0.0,
        0.0,
    )
    text = rule_description(partner)
    assert text == "trinity-beast partner pt_0123456789abcdef Zurich Quant (b)NOC(/b)"
    assert BOTOCORE.fullmatch(text) and PATTERN.fullmatch(text)


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_any_text_becomes_ec2_safe(text: str) -> None:
    safe = ec2_safe(text)
    assert len(safe) <= 255
    assert BOTOCORE.fullmatch(safe), safe
    assert PATTERN.fullmatch(safe), safe
    if PATTERN.fullmatch(text) and len(text) <= 255 and "  " not in text and text == text.strip():
        assert safe == text  # what was already allowed is kept as typed
