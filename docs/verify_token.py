#!/usr/bin/env python3
"""Reference verifier for auth-server session tokens (see docs/token.md).

Usage: python3 docs/verify_token.py SECRET TOKEN [NOW]

SECRET is the signing secret as a raw string (its bytes as given on the
command line), NOW is optional Unix seconds (default: the current time).

On success prints the claims as one JSON object and exits 0. On failure
prints the error kind (malformed, unknown_key, bad_signature, expired) to
stderr and exits 1. Usage errors exit 2.

This is an independent second implementation of the same strict rules as
src/token.rs, written with the Python standard library only, so that the
format can be checked without trusting the Rust code.
"""

import base64
import hashlib
import hmac
import struct
import sys
import time

VERSION = 1
MIN_SECRET_LEN = 32
MAX_TOKEN_LEN = 256
MAX_CLOCK_SKEW_SECS = 60
PAYLOAD_LEN = 45
MAC_LEN = 32
KEY_ID_LABEL = b"auth-server token key id v1"
B64URL_ALPHABET = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class TokenError(Exception):
    """Carries one of the four error kinds as its message."""


def key_id(secret):
    return hmac.new(secret, KEY_ID_LABEL, hashlib.sha256).digest()[:4]


def b64url_decode_strict(text):
    """Decode unpadded base64url, accepting only the one canonical spelling.

    Python's own decoders are lenient (they skip stray characters and ignore
    non-zero trailing bits), so after decoding we re-encode and require the
    result to be exactly the input.
    """
    if not all(c in B64URL_ALPHABET for c in text):
        raise TokenError("malformed")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:  # binascii.Error is a ValueError, e.g. length 4n+1
        raise TokenError("malformed")
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != text:
        raise TokenError("malformed")
    return raw


def verify(secret, token, now):
    # 1. Cheap length cap before any other work.
    if len(token) > MAX_TOKEN_LEN:
        raise TokenError("malformed")
    # 2. Exactly one '.', both parts non-empty.
    parts = token.split(".")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise TokenError("malformed")
    payload_text, mac_text = parts
    # 3. Strict canonical base64url for both parts.
    payload = b64url_decode_strict(payload_text)
    mac = b64url_decode_strict(mac_text)
    # 4. Exact lengths.
    if len(payload) != PAYLOAD_LEN or len(mac) != MAC_LEN:
        raise TokenError("malformed")
    # 5. Version, then key id: the only fields read before the MAC check.
    if payload[0] != VERSION:
        raise TokenError("malformed")
    if payload[1:5] != key_id(secret):
        raise TokenError("unknown_key")
    # 6. MAC over the ASCII text of the payload part, compared in constant time.
    expected = hmac.new(secret, payload_text.encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise TokenError("bad_signature")
    # 7. Claims are trusted only now.
    user_id, session_id, issued_at, expires_at = struct.unpack(">Q16sQQ", payload[5:])
    if expires_at <= issued_at:
        raise TokenError("malformed")
    if issued_at > now + MAX_CLOCK_SKEW_SECS:
        raise TokenError("malformed")
    if now >= expires_at:
        raise TokenError("expired")
    return {
        "user_id": user_id,
        "session_id": session_id.hex(),
        "issued_at": issued_at,
        "expires_at": expires_at,
        "key_id": payload[1:5].hex(),
    }


def main(argv):
    if len(argv) not in (3, 4):
        print("usage: python3 docs/verify_token.py SECRET TOKEN [NOW]", file=sys.stderr)
        return 2
    # surrogateescape gives back the exact bytes of the argument, even non-UTF-8 ones.
    secret = argv[1].encode("utf-8", "surrogateescape")
    if len(secret) < MIN_SECRET_LEN:
        print(f"secret must be at least {MIN_SECRET_LEN} bytes", file=sys.stderr)
        return 2
    try:
        now = int(argv[3]) if len(argv) == 4 else int(time.time())
    except ValueError:
        print("NOW must be an integer (Unix seconds)", file=sys.stderr)
        return 2
    try:
        claims = verify(secret, argv[2], now)
    except TokenError as err:
        print(err, file=sys.stderr)
        return 1
    print(
        '{"user_id":%d,"session_id":"%s","issued_at":%d,"expires_at":%d,"key_id":"%s"}'
        % (
            claims["user_id"],
            claims["session_id"],
            claims["issued_at"],
            claims["expires_at"],
            claims["key_id"],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
