"""A private SMTP server for the tests (Debian's python3-aiosmtpd).

Usage: smtp_sink.py PORT DIR. Each message it accepts is written to DIR as a whole `.eml`
file (first under a `.partial` name, then renamed), preceded by an `X-Envelope-To` line with
the envelope's recipients. Prints `ready` once it listens; runs until its stdin closes.
"""

import os
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        name = os.path.join(self.directory, f"{os.getpid()}-{self.count:06}.eml")
        with open(name + ".partial", "wb") as message:
            message.write(f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\r\n".encode())
            message.write(envelope.original_content or envelope.content)
        os.rename(name + ".partial", name)
        return "250 OK"


def main():
    port, directory = int(sys.argv[1]), sys.argv[2]
    controller = Controller(Sink(directory), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
