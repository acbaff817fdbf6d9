"""Email backend of the embedded topology: each message is saved under var/mail/ and echoed.

A person running `make run` can open the verification link from the console or from the
saved file; nothing is sent anywhere.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from django.conf import settings
from django.core.mail.backends.filebased import EmailBackend as FileEmailBackend
from django.core.mail.message import EmailMessage


class FileAndConsoleEmailBackend(FileEmailBackend):
    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        for message in email_messages:
            recipients = ", ".join(message.to)
            sys.stdout.write(f"[mail] to {recipients}: {message.subject!r} saved in {settings.EMAIL_FILE_PATH}/\n")
        sys.stdout.flush()
        return sent
