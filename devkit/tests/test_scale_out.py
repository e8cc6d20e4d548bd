"""
Correctness rests on PostgreSQL alone: the site runs as several gunicorn
processes, here two servers of two workers each on one database (the session's
`site_servers`, shared with the proof scenarios), and a client racing itself
across them still gets one payment and one PaymentIntent.
"""

import threading
import time

import pytest
import requests
from rest_framework.authtoken.models import Token

from devkit.siteserver import SiteServer
from payments.models import Payment


@pytest.mark.django_db(transaction=True)
def test_one_key_raced_across_two_servers_makes_one_payment(site_servers, owner, fake_stripe):
    token = Token.objects.create(user=owner).key
    answers: list[requests.Response] = []
    start = threading.Barrier(8)

    def create(site: SiteServer) -> None:
        start.wait()
        answers.append(
            requests.post(
                site.url + "/api/payments/",
                json={"amount": 2000, "currency": "usd"},
                headers={"Authorization": f"Token {token}", "Idempotency-Key": "raced-order"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=create, args=(site_servers[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    codes = sorted(answer.status_code for answer in answers)
    assert set(codes) <= {201, 409}, codes
    assert 201 in codes
    assert Payment.objects.count() == 1
    assert len(fake_stripe.list("payment_intents")) == 1
    created = {answer.json()["id"] for answer in answers if answer.status_code == 201}
    assert created == {str(Payment.objects.get().id)}


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_is_replaced_and_the_site_keeps_answering(site_servers):
    site = site_servers[0]
    workers = len(site.worker_pids())
    killed = site.kill_worker()

    answers = [requests.get(site.url + "/healthz", timeout=10).status_code for _ in range(6)]
    # The master reaps and replaces the worker on its own schedule: slow on a busy machine.
    deadline = time.monotonic() + 30
    while (killed in site.worker_pids() or len(site.worker_pids()) < workers) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert answers == [200] * 6
    assert killed not in site.worker_pids()
    assert len(site.worker_pids()) == workers
