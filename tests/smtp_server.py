#!/usr/bin/env python3
"""A real SMTP server for the integration tests (aiosmtpd), with the knobs
the tests need: STARTTLS on a certificate of the test's own, AUTH, answers
of 4xx or 5xx on demand, and every received message written to a spool
directory as JSON, its MIME parts decoded, so a test reads what really
arrived.

    smtp_server.py --spool DIR [--port N] [--cert PEM --key PEM]
                   [--implicit-tls] [--no-starttls] [--auth USER:PASS]
                   [--tempfail N] [--reject-rcpt ADDRESS]... [--stall-first]

Prints "READY <port>" on stdout once it accepts connections, then runs
until killed. With --cert and --key it offers STARTTLS (and requires it
before MAIL); --implicit-tls speaks TLS from the first byte instead;
--no-starttls offers neither. --auth requires AUTH PLAIN or LOGIN with
those credentials. --tempfail answers the first N messages' DATA with
451; --reject-rcpt answers RCPT TO for that address with 550;
--stall-first never answers the first message's DATA (and keeps nothing of
it), as a relay or a courier that hangs mid-send.
"""

import argparse
import asyncio
import email
import email.policy
import json
import os
import socket
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    def __init__(self, args):
        self.args = args
        self.tempfails_left = args.tempfail
        self.stall_left = 1 if args.stall_first else 0
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in (a.lower() for a in self.args.reject_rcpt):
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stall_left > 0:
            self.stall_left -= 1
            await asyncio.sleep(3600)
        if self.tempfails_left > 0:
            self.tempfails_left -= 1
            return "451 4.3.0 Try again later"
        self.count += 1
        raw = envelope.original_content or envelope.content
        message = email.message_from_bytes(raw, policy=email.policy.default)
        parts = {"text/plain": "", "text/html": ""}
        for part in message.walk():
            kind = part.get_content_type()
            if kind in parts and not part.is_multipart():
                parts[kind] = part.get_content()
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": [[k, str(v)] for k, v in message.items()],
            "content_type": message.get_content_type(),
            "text": parts["text/plain"],
            "html": parts["text/html"],
            # STARTTLS sets session.ssl; implicit TLS shows on the transport.
            "tls": session.ssl is not None
            or server.transport.get_extra_info("ssl_object") is not None,
            "authenticated": bool(session.authenticated),
            "received_at": time.time(),
        }
        name = os.path.join(self.args.spool, f"{time.time_ns()}-{self.count}.json")
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spool", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--implicit-tls", action="store_true")
    p.add_argument("--no-starttls", action="store_true")
    p.add_argument("--auth")
    p.add_argument("--tempfail", type=int, default=0)
    p.add_argument("--reject-rcpt", action="append", default=[])
    p.add_argument("--stall-first", action="store_true")
    args = p.parse_args()
    port = args.port or free_port()

    context = None
    if args.cert and args.key:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.cert, args.key)

    kwargs = {}
    if args.auth:
        user, password = args.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            return AuthResult(success=ok)

        kwargs["authenticator"] = authenticator
        kwargs["auth_required"] = True
        # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS session is
        # encrypted from the start, so AUTH is safe there too.
        kwargs["auth_require_tls"] = (
            context is not None and not args.no_starttls and not args.implicit_tls
        )
    if context is not None and args.implicit_tls:
        kwargs["ssl_context"] = context
    elif context is not None and not args.no_starttls:
        kwargs["tls_context"] = context
        kwargs["require_starttls"] = True

    controller = Controller(
        Handler(args), hostname="127.0.0.1", port=port, ready_timeout=10, **kwargs
    )
    controller.start()
    print(f"READY {port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
