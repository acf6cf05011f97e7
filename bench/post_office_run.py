"""django-post-office's side of the delivery comparison (bench/delivery_throughput.py).

Runs with the Python of post-office's own virtual environment, never comcenter's: it imports
nothing of comcenter. It configures a minimal Django project (post_office's defaults, the SMTP
backend pointed at the benchmark's loopback SMTP server), migrates its database, queues
--emails mails with `mail.send_many` (priority medium: queued, not sent) in `--phase queue`;
in `--phase send` it times `manage.py send_queued_mail --processes N` until the queue is empty,
with the CPU it and its pool spent, and prints one JSON line.

Each mail carries the Message-ID `<po-{n}@post-office.bench>`, so the SMTP server can count
post-office's mails apart from comcenter's and spot a mail delivered twice.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db-port", type=int, required=True)
    parser.add_argument("--db-name", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--emails", type=int, default=20000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--phase", choices=["queue", "send"], required=True)
    args = parser.parse_args()

    import django
    from django.conf import settings

    settings.configure(
        SECRET_KEY="post-office-bench",
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "post_office"],
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "HOST": "127.0.0.1",
                "PORT": args.db_port,
                "NAME": args.db_name,
                "USER": "postgres",
            }
        },
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        # post-office renders every subject and body as a template, even without one.
        TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}],
        EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=args.smtp_port,
        DEFAULT_FROM_EMAIL="bench@example.org",
        POST_OFFICE={"BATCH_SIZE": args.batch},
    )
    django.setup()
    from django.core.management import call_command
    from post_office import mail
    from post_office.models import STATUS, Email

    if args.phase == "queue":
        call_command("migrate", verbosity=0)
        queued_at = time.perf_counter()
        mail.send_many(
            [
                {
                    "recipients": [f"student-{n}@example.org"],
                    "sender": "bench@example.org",
                    "subject": f"Reminder {n} for student-{n}",
                    "message": f"Hello student-{n},\n\nThis is reminder number {n}.\n",
                    "headers": {"Message-ID": f"<po-{n}@post-office.bench>"},
                    "priority": "medium",
                }
                for n in range(args.emails)
            ]
        )
        elapsed = time.perf_counter() - queued_at
        print(json.dumps({"queue_mails_per_s": round(args.emails / elapsed, 1)}))
        return
    before = _cpu_seconds()
    started = time.perf_counter()
    call_command("send_queued_mail", processes=args.processes)
    elapsed = time.perf_counter() - started
    sent = Email.objects.filter(status=STATUS.sent).count()
    print(
        json.dumps(
            {
                "elapsed_s": round(elapsed, 3),
                "sent": sent,
                "failed": Email.objects.filter(status=STATUS.failed).count(),
                "messages_per_s": round(sent / elapsed, 1) if elapsed > 0 else None,
                # This process and its pool's processes (reaped by now) while sending.
                "sender_cpu_s": round(_cpu_seconds() - before, 3),
                "processes": args.processes,
                "batch": args.batch,
                "django": django.get_version(),
            }
        )
    )


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    main()
