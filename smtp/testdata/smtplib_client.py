"""SMTP transactions with Python's smtplib, for the Go tests.

Usage: smtplib_client.py HOST PORT JSON
JSON: a list of {"from": "...", "rcpts": ["..."], "data": "...", "starttls": false, "utf8": false},
each run on a connection of its own, in order.
Prints a JSON list with, for each, the reply (code, text) of EHLO, MAIL, each RCPT and DATA.
"""
import json
import smtplib
import ssl
import sys


def reply(t):
    code, msg = t
    return [code, msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg]


def run(host, port, spec):
    out = {}
    s = smtplib.SMTP(host, port, local_hostname="smtplib.client.test", timeout=20)
    try:
        out["ehlo"] = reply(s.ehlo())
        if spec.get("starttls"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            out["starttls"] = reply(s.starttls(context=ctx))
            out["ehlo2"] = reply(s.ehlo())
        opts = ["SMTPUTF8"] if spec.get("utf8") else []
        out["mail"] = reply(s.mail(spec["from"], opts))
        out["rcpt"] = [reply(s.rcpt(r)) for r in spec["rcpts"]]
        if "data" in spec and any(r[0] == 250 for r in out["rcpt"]):
            try:
                out["data"] = reply(s.data(spec["data"].encode("utf-8")))
            except smtplib.SMTPDataError as e:
                out["data"] = [e.smtp_code, e.smtp_error.decode("utf-8", "replace")]
        try:
            s.quit()
        except smtplib.SMTPServerDisconnected:
            pass
    except smtplib.SMTPServerDisconnected as e:
        out["disconnected"] = str(e)
    return out


def main():
    host, port, specs = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    print(json.dumps([run(host, port, spec) for spec in specs]))


main()
