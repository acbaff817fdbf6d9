"""Email backend of the embedded topology: each message is saved under var/mail/ and echoed.

A person running `make run` opens the verification link straight from the console (the links of
every message are printed with its subject) or from the saved file; nothing is sent anywhere.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from django.conf import settings
from django.core.mail.backends.filebased import EmailBackend as FileEmailBackend
from django.core.mail.message import EmailMessage

LINK = re.compile(r"https?://[^\s<>\"']+")


def console_lines(message: EmailMessage) -> list[str]:
    """What the console shows of one message: who, what, where it is saved, and its links."""
    recipients = ", ".join(message.to)
    lines = [f"[mail] to {recipients}: {message.subject!r} (saved in {settings.EMAIL_FILE_PATH}/)"]
    body = message.body if isinstance(message.body, str) else ""
    lines += [f"[mail]   link: {link}" for link in dict.fromkeys(LINK.findall(body))]
    return lines


class FileAndConsoleEmailBackend(FileEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        for message in email_messages:
            sys.stdout.write("".join(f"{line}\n" for line in console_lines(message)))
        sys.stdout.flush()
        return sent
