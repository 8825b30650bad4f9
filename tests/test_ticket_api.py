"""``GET /ticket`` on the real service: validation, verifiers, and the error shape."""

from __future__ import annotations

import time

import pytest
import requests
from conftest import start_gru

from gru.services.token1 import sign_token1

GOOD = {"userType": "1", "userName": "student1", "userId": "123", "token1": "afsfdfdsfdsf"}


def test_ticket_has_the_documented_fields(gru):
    before = int(time.time() * 1000)
    response = requests.get(f"{gru.url}/ticket", params=GOOD, timeout=5)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["success", "errorCode", "msg", "data"]
    assert (body["success"], body["errorCode"], body["msg"]) == (True, 0, "")
    data = body["data"]
    assert before <= data["time"] <= int(time.time() * 1000)
    assert data["addr"] == gru.url
    assert data["name"] == "node_1"
    assert data["backupNodes"] == []
    assert isinstance(data["token"], str) and len(data["token"]) > 20
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("change", "needle"), [
    ({"userType": None}, "userType"), ({"userName": None}, "userName"), ({"userId": None}, "userId"),
    ({"token1": None}, "token1"), ({"userType": "2"}, "userType"), ({"userType": "x"}, "userType"),
    ({"userId": "a" * 200}, "userId"), ({"userName": " " * 3}, "userName"), ({"token1": ""}, "token1"),
    ({"userId": "bad\x01id"}, "userId"),
])
def test_bad_parameters_are_400_naming_the_parameter(gru, change, needle):
    params = {k: v for k, v in (GOOD | change).items() if v is not None}
    response = requests.get(f"{gru.url}/ticket", params=params, timeout=5)
    assert response.status_code == 400
    body = response.json()
    assert (body["success"], body["errorCode"]) == (False, 400)
    assert needle in body["msg"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_methods_are_405_with_the_json_shape(gru, method):
    response = requests.request(method, f"{gru.url}/ticket", params=GOOD, timeout=5)
    assert response.status_code == 405
    assert response.json()["errorCode"] == 405


def test_unknown_paths_answer_json_404(gru):
    response = requests.get(f"{gru.url}/nothing-here", timeout=5)
    assert response.status_code == 404
    assert response.json() == {"success": False, "errorCode": 404, "msg": "not found"}


@pytest.fixture(scope="module")
def hmac_gru():
    server = start_gru({"GRU_TOKEN1_VERIFIER": "hmac", "GRU_TOKEN1_SECRET": "business-key",
                        "GRU_PUBLIC_ADDR": "http://127.0.0.1:11111", "GRU_NODE_NAME": "node_7"})
    yield server
    server.stop()


def test_hmac_verifier_accepts_a_signed_token1_and_rejects_others(hmac_gru):
    expires = int(time.time()) + 60
    good = GOOD | {"token1": sign_token1("business-key", "123", 1, expires)}
    response = requests.get(f"{hmac_gru.url}/ticket", params=good, timeout=5)
    assert response.status_code == 200
    assert response.json()["data"]["addr"] == "http://127.0.0.1:11111"  # GRU_PUBLIC_ADDR
    assert response.json()["data"]["name"] == "node_7"
    for token1 in ("afsfdfdsfdsf", sign_token1("business-key", "124", 1, expires),
                   sign_token1("business-key", "123", 1, int(time.time()) - 1)):
        response = requests.get(f"{hmac_gru.url}/ticket", params=GOOD | {"token1": token1}, timeout=5)
        assert response.status_code == 401
        assert response.json()["errorCode"] == 401


@pytest.fixture(scope="module")
def http_gru():
    # port 9 (discard) is closed on loopback: the business system is unreachable
    server = start_gru({"GRU_TOKEN1_VERIFIER": "http", "GRU_TOKEN1_URL": "http://127.0.0.1:9/verify",
                        "GRU_TOKEN1_TIMEOUT": "1"})
    yield server
    server.stop()


def test_unreachable_business_system_is_503_not_a_hang(http_gru):
    started = time.monotonic()
    response = requests.get(f"{http_gru.url}/ticket", params=GOOD, timeout=10)
    assert response.status_code == 503
    assert response.json()["errorCode"] == 503
    assert time.monotonic() - started < 5


def test_health_endpoint(gru):
    assert requests.get(f"{gru.url}/healthz", timeout=5).json()["status"] == "ok"
