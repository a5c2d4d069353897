"""TLS to PostgreSQL with libpq's meanings of `sslmode` and `sslrootcert`.

A postgresql:// URL carries them as query parameters, so the same URL works with psql:

- `disable` (the default here): no TLS.
- `require`: encrypted, the certificate is not checked (as libpq does) -- unless
  `sslrootcert` is given, then the chain is checked like `verify-ca`.
- `verify-ca`: encrypted, the chain must lead to a trusted CA; the host name is not checked.
- `verify-full`: the chain and the host name are checked.

`sslrootcert` is a CA bundle file; without it (or with libpq's `system`) the system store is
used. libpq's `allow` and `prefer` (try TLS, fall back to plain) are refused: a silent
downgrade is what this setting exists to rule out.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from trinity_beast.domain.setting_values import ConfigError

SSLMODES = ("disable", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class TlsOptions:
    sslmode: str = "disable"
    sslrootcert: str | None = None  # a file; None = the system store

    @property
    def verifies(self) -> bool:
        """Whether the server's certificate chain is checked at all."""
        return self.sslmode in ("verify-ca", "verify-full") or (
            self.sslmode == "require" and self.sslrootcert is not None
        )


def tls_options(url: str, setting: str = "DATABASE_URL") -> TlsOptions:
    """sslmode and sslrootcert from the URL's query; ConfigError naming `setting` if either is bad."""
    query = parse_qs(urlsplit(url).query)
    for name in ("sslmode", "sslrootcert"):
        if len(query.get(name, [])) > 1:
            raise ConfigError(f"{setting}: {name} given more than once")
    sslmode = query.get("sslmode", ["disable"])[0].strip().lower()
    if sslmode not in SSLMODES:
        raise ConfigError(f"{setting}: sslmode: expected one of {', '.join(SSLMODES)}, got {sslmode!r}")
    root = query.get("sslrootcert", [""])[0].strip() or None
    if root == "system":
        root = None
    if root is not None and sslmode == "disable":
        raise ConfigError(f"{setting}: sslrootcert is set but sslmode=disable turns TLS off")
    if root is not None and not Path(root).is_file():
        raise ConfigError(f"{setting}: sslrootcert: no such file {root!r}")
    return TlsOptions(sslmode, root)


def ssl_context(options: TlsOptions, setting: str = "DATABASE_URL") -> ssl.SSLContext | None:
    """The context pg8000 wraps its socket with; None for sslmode=disable."""
    if options.sslmode == "disable":
        return None
    try:
        context = ssl.create_default_context(cafile=options.sslrootcert)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"{setting}: sslrootcert {options.sslrootcert!r} is not a PEM CA bundle: {exc}") from None
    if options.sslmode != "verify-full":
        context.check_hostname = False
    if not options.verifies:
        context.verify_mode = ssl.CERT_NONE
    return context


def explain(exc: BaseException, options: TlsOptions, host: str, port: int) -> str:
    """One line for a failed TLS handshake: what was checked and what to change."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        trust = options.sslrootcert or "the system CA store"
        if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
            hint = "connect by a name the certificate lists, or use sslmode=verify-ca to skip the host name check"
        else:
            hint = f"its CA is not in {trust}; point sslrootcert at the CA bundle that signed it"
        return (
            f"TLS certificate check failed for PostgreSQL at {host}:{port} (sslmode={options.sslmode}): "
            f"{reason}; {hint}"
        )
    return f"TLS handshake with PostgreSQL at {host}:{port} failed (sslmode={options.sslmode}): {exc}"
