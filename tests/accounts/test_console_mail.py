"""The embedded topology's mail backend: a new user finds the verification link in the console."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.mail import EmailMessage

from gpucloud.mail import FileAndConsoleEmailBackend


def test_the_console_shows_each_link_of_a_saved_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link = "http://127.0.0.1:8000/accounts/confirm-email/MQ:1tXyz:abc/"
    message = EmailMessage(
        subject="[gpucloud] Please confirm your email address",
        body=f"Hello,\n\nTo confirm, go to {link}\n\nAgain: {link}\nThanks, https://gpucloud.example.com",
        to=["dana@example.com"],
    )

    assert FileAndConsoleEmailBackend(file_path=str(tmp_path)).send_messages([message]) == 1

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("[mail] to dana@example.com: '[gpucloud] Please confirm your email address'")
    assert printed[1:] == [f"[mail]   link: {link}", "[mail]   link: https://gpucloud.example.com"]
    (saved,) = tmp_path.iterdir()
    assert link in saved.read_text()
