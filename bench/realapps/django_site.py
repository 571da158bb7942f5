"""The Django row: the polls index of the Django tutorial, on SQLite, with the tutorial
project's middleware that needs no table (security, common, CSRF, clickjacking) and DEBUG
off.

The view reads the 25 latest questions with their choices (prefetched: two queries) and
renders a template that loops over both. The database is made and filled at import, in a
temporary directory of this process.
"""

import datetime
import os
import tempfile

import django
from django.conf import settings

DATABASE = os.path.join(tempfile.mkdtemp(prefix="torsion-bench-polls-"), "polls.sqlite3")

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    SECRET_KEY="bench-only",
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["realapps.polls"],
    # The middleware of the tutorial's project that needs no database table (sessions and
    # authentication do): CommonMiddleware also sets Content-Length, as every Django site's
    # responses have it.
    MIDDLEWARE=[
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
    ],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DATABASE}},
    TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True}],
    USE_TZ=True,
    TIME_ZONE="UTC",
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.db import connection  # noqa: E402
from django.shortcuts import render  # noqa: E402
from django.urls import path  # noqa: E402

from realapps.polls.models import Choice, Question  # noqa: E402


def _fill():
    with connection.schema_editor() as editor:
        editor.create_model(Question)
        editor.create_model(Choice)
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for n in range(100):
        question = Question.objects.create(
            question_text=f"Question {n}: which option do you prefer?",
            pub_date=start + datetime.timedelta(hours=n),
        )
        Choice.objects.bulk_create(
            Choice(question=question, choice_text=f"Option {c}", votes=(n * 7 + c * 3) % 11)
            for c in range(4)
        )
    connection.close()


_fill()


def index(request):
    latest = Question.objects.order_by("-pub_date").prefetch_related("choices")[:25]
    return render(request, "polls/index.html", {"latest_question_list": latest})


urlpatterns = [path("polls/", index)]

application = get_wsgi_application()
