#!/usr/bin/env python3
"""LOCAL STAND-IN for the axllent/mailpit image (built by .ci/images.sh).

Not Mailpit: a development mail catcher small enough to read, for machines
that reach no container registry. It accepts mail over SMTP and keeps it in
memory, and serves the part of Mailpit's HTTP API (v1) that a test uses:

  GET    /api/v1/messages          newest first: {"total", "count", "start",
                                    "messages": [{"ID", "MessageID", "From",
                                    "To", "Cc", "Bcc", "Subject", "Created",
                                    "Size", "Snippet", ...}]}; ?start= &limit=
  GET    /api/v1/message/{ID}      one message with "Text" and "HTML" bodies;
                                    ID `latest` is the newest
  GET    /api/v1/message/{ID}/raw  its source
  DELETE /api/v1/messages          every message, or those in {"IDs": [...]}
  GET    /                          a plain HTML list of the inbox

SMTP: no TLS, no authentication (Mailpit's defaults), 10 MiB per message;
the envelope recipients that are not in To or Cc are reported as Bcc, as
Mailpit does. Addresses come from MP_SMTP_BIND_ADDR (default 0.0.0.0:1025)
and MP_UI_BIND_ADDR (default 0.0.0.0:8025), Mailpit's own variables. At most
MP_MAX_MESSAGES (default 500) are kept; the oldest go first. The log has one
line per message (sender, recipients, subject), never a body.
"""

import datetime
import email.policy
import email.utils
import html
import http.server
import json
import os
import secrets
import signal
import socketserver
import sys
import threading
from email.parser import BytesParser

MAX_SIZE = 10 * 1024 * 1024
MAX_LINE = 4096
MAX_MESSAGES = int(os.environ.get("MP_MAX_MESSAGES", "500"))

lock = threading.Lock()
messages = []  # oldest first; each a dict, see store()


def log(text):
    print(f"[mailpit-standin] {text}", flush=True)


def addresses(values):
    return [
        {"Name": name, "Address": address}
        for name, address in email.utils.getaddresses(values)
        if address
    ]


def body(msg, kind):
    part = msg.get_body(preferencelist=(kind,))
    if part is None:
        return ""
    try:
        return part.get_content()
    except (LookupError, ValueError):
        return part.get_payload(decode=True).decode("utf-8", "replace")


def store(raw, envelope_to):
    msg = BytesParser(policy=email.policy.default).parsebytes(raw)
    to = addresses(msg.get_all("To", []))
    cc = addresses(msg.get_all("Cc", []))
    listed = {a["Address"].lower() for a in to + cc}
    bcc = [{"Name": "", "Address": a} for a in envelope_to if a.lower() not in listed]
    senders = addresses(msg.get_all("From", []))
    text = body(msg, "plain")
    record = {
        "ID": secrets.token_urlsafe(16),
        "MessageID": (msg.get("Message-ID") or "").strip("<> "),
        "Read": False,
        "From": senders[0] if senders else {"Name": "", "Address": ""},
        "To": to,
        "Cc": cc,
        "Bcc": bcc,
        "ReplyTo": addresses(msg.get_all("Reply-To", [])),
        "Subject": str(msg.get("Subject", "")),
        "Created": datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "Tags": [],
        "Size": len(raw),
        "Attachments": 0,
        "Snippet": " ".join(text.split())[:250],
        "Text": text,
        "HTML": body(msg, "html"),
        "Raw": raw,
    }
    with lock:
        messages.append(record)
        del messages[:-MAX_MESSAGES]
    log(
        f"message {record['ID']} from {record['From']['Address']} to "
        f"{', '.join(envelope_to)}, subject {record['Subject']!r}"
    )
    return record["ID"]


SUMMARY = ("ID", "MessageID", "Read", "From", "To", "Cc", "Bcc", "ReplyTo",
           "Subject", "Created", "Tags", "Size", "Attachments", "Snippet")


class Smtp(socketserver.StreamRequestHandler):
    timeout = 60

    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 mailpit-standin ESMTP")
        sender, recipients = None, []
        while True:
            line = self.rfile.readline(MAX_LINE)
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            if verb == "EHLO":
                self.reply("250-mailpit-standin")
                self.reply("250-8BITMIME")
                self.reply("250-SMTPUTF8")
                self.reply(f"250 SIZE {MAX_SIZE}")
            elif verb == "HELO":
                self.reply("250 mailpit-standin")
            elif command.upper().startswith("MAIL FROM:"):
                sender, recipients = command[10:].strip(), []
                self.reply("250 2.1.0 Ok")
            elif command.upper().startswith("RCPT TO:"):
                if sender is None:
                    self.reply("503 5.5.1 Error: need MAIL command")
                    continue
                address = command[8:].strip().split(" ")[0].strip("<>")
                recipients.append(address)
                self.reply("250 2.1.5 Ok")
            elif verb == "DATA":
                if not recipients:
                    self.reply("503 5.5.1 Error: need RCPT command")
                    continue
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                raw = self.read_data()
                if raw is None:
                    self.reply("552 5.3.4 Message too big")
                else:
                    self.reply(f"250 2.0.0 Ok: queued as {store(raw, recipients)}")
                sender, recipients = None, []
            elif verb == "RSET":
                sender, recipients = None, []
                self.reply("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.reply("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.reply("221 2.0.0 Bye")
                return
            elif command.upper() == "STARTTLS":
                self.reply("454 4.7.0 TLS not available")
            else:
                self.reply("502 5.5.2 Error: command not recognized")

    def read_data(self):
        """The message up to the lone dot, dot-unstuffed; None past MAX_SIZE."""
        lines, size = [], 0
        while True:
            line = self.rfile.readline(MAX_SIZE + 3)
            if not line or line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]
            size += len(line)
            if size <= MAX_SIZE:
                lines.append(line)
        return b"".join(lines) if size <= MAX_SIZE else None


class Api(http.server.BaseHTTPRequestHandler):
    server_version = "mailpit-standin"

    def log_message(self, *args):
        pass

    def send(self, status, payload, content_type="application/json"):
        data = payload if isinstance(payload, bytes) else (
            json.dumps(payload).encode() if content_type == "application/json"
            else payload.encode())
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def find(self, message_id):
        with lock:
            if message_id == "latest":
                return messages[-1] if messages else None
            return next((m for m in messages if m["ID"] == message_id), None)

    def do_GET(self):
        path, _, query = self.path.partition("?")
        params = dict(p.partition("=")[::2] for p in query.split("&") if p)
        if path == "/api/v1/messages":
            with lock:
                newest = list(reversed(messages))
            try:
                start = max(0, int(params.get("start", "0")))
                limit = max(0, int(params.get("limit", "50")))
            except ValueError:
                return self.send(400, "invalid start or limit", "text/plain")
            page = [{k: m[k] for k in SUMMARY} for m in newest[start:start + limit]]
            return self.send(200, {
                "total": len(newest), "unread": len(newest),
                "messages_count": len(newest), "messages_unread": len(newest),
                "count": len(page), "start": start, "tags": [], "messages": page,
            })
        parts = path.strip("/").split("/")
        if len(parts) in (4, 5) and parts[:3] == ["api", "v1", "message"]:
            message = self.find(parts[3])
            if message is None:
                return self.send(404, "message not found", "text/plain")
            if len(parts) == 5:
                if parts[4] != "raw":
                    return self.send(404, "not found", "text/plain")
                return self.send(200, message["Raw"], "text/plain; charset=utf-8")
            detail = {k: v for k, v in message.items() if k not in ("Raw", "Snippet")}
            detail.update(Date=message["Created"], ReturnPath="", Inline=[], Attachments=[])
            return self.send(200, detail)
        if path == "/":
            with lock:
                rows = "".join(
                    f"<li>{html.escape(m['Created'])} {html.escape(m['From']['Address'])}: "
                    f"<a href='/api/v1/message/{m['ID']}'>{html.escape(m['Subject'])}</a></li>"
                    for m in reversed(messages))
            return self.send(200, "<!doctype html><title>Inbox (Mailpit stand-in)</title>"
                                  f"<h1>Inbox (Mailpit stand-in)</h1><ul>{rows}</ul>",
                             "text/html; charset=utf-8")
        self.send(404, "not found", "text/plain")

    def do_DELETE(self):
        if self.path.partition("?")[0] != "/api/v1/messages":
            return self.send(404, "not found", "text/plain")
        length = int(self.headers.get("Content-Length") or 0)
        ids = None
        if length:
            try:
                ids = json.loads(self.rfile.read(min(length, 1 << 20))).get("IDs") or None
            except (ValueError, AttributeError):
                return self.send(400, "invalid JSON", "text/plain")
        with lock:
            if ids is None:
                messages.clear()
            else:
                messages[:] = [m for m in messages if m["ID"] not in set(ids)]
        self.send(200, "ok", "text/plain")


def address(variable, default):
    host, _, port = os.environ.get(variable, default).rpartition(":")
    return (host or "0.0.0.0", int(port))


class SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    # As PID 1 in a container, a signal without a handler is ignored.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    smtp = SmtpServer(address("MP_SMTP_BIND_ADDR", "0.0.0.0:1025"), Smtp)
    api = http.server.ThreadingHTTPServer(address("MP_UI_BIND_ADDR", "0.0.0.0:8025"), Api)
    api.daemon_threads = True
    threading.Thread(target=smtp.serve_forever, daemon=True).start()
    log(f"SMTP on {smtp.server_address[0]}:{smtp.server_address[1]}, "
        f"HTTP on {api.server_address[0]}:{api.server_address[1]} (a stand-in, not Mailpit)")
    try:
        api.serve_forever()
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
