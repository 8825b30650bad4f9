"""token1 verifiers: accept (development), hmac (shared secret) and http (business system call)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import start_gru

from gru.backends.memory import MemoryBackend
from gru.errors import Code, GruError
from gru.models import Instance
from gru.services.nodes import NodeDirectory
from gru.services.tickets import TicketService
from gru.services.token1 import AcceptVerifier, HmacVerifier, HttpVerifier, Token1Verifier, sign_token1
from gru.services.tokens import TokenService

NOW = 1_800_000_000


def test_accept_takes_any_non_empty_token_and_warns(caplog):
    verifier = AcceptVerifier()
    assert "development only" in caplog.text
    verifier.verify("1", 0, "a", "anything")
    with pytest.raises(GruError):
        verifier.verify("1", 0, "a", "")


def test_hmac_accepts_a_token_signed_for_this_user():
    verifier = HmacVerifier("secret", clock=lambda: NOW)
    verifier.verify("123", 1, "a", sign_token1("secret", "123", 1, NOW + 60))


@pytest.mark.parametrize("token1", [
    sign_token1("secret", "124", 1, NOW + 60),  # another user
    sign_token1("secret", "123", 0, NOW + 60),  # another type
    sign_token1("other", "123", 1, NOW + 60),  # another key
    sign_token1("secret", "123", 1, NOW - 1),  # expired
    sign_token1("secret", "123", 1, NOW),  # expires this very second
    "garbage", "123.", ".abc", "9" * 20 + ".abc",
])
def test_hmac_rejects_anything_else(token1):
    with pytest.raises(GruError) as info:
        HmacVerifier("secret", clock=lambda: NOW).verify("123", 1, "a", token1)
    assert info.value.code is Code.TOKEN1_REJECTED


GOOD = sign_token1("secret", "123", 1, NOW + 60)
EXPIRES, SIGNATURE = GOOD.split(".")
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("token1", [
    f"²{EXPIRES[1:]}.{SIGNATURE}", "².abc", "¹²³.abc",  # digits int() refuses
    f"{EXPIRES.translate(ARABIC_INDIC)}.{SIGNATURE}",  # the same number in another script
    f"0{EXPIRES}.{SIGNATURE}", f"+{EXPIRES}.{SIGNATURE}", f" {EXPIRES}.{SIGNATURE}",  # other spellings of it
    f"{EXPIRES}.{SIGNATURE.upper()}", f"{EXPIRES}.{SIGNATURE}\n", f"{EXPIRES}.{SIGNATURE}.",
    f"{EXPIRES}.{SIGNATURE[:-1]}é", f"{EXPIRES}.{SIGNATURE[:-1]}٣", f"{EXPIRES}.ü",  # non-ASCII signatures
], ids=["superscript", "superscript-short", "superscripts", "arabic-indic", "leading-zero", "plus", "space",
        "uppercase-hex", "newline", "trailing-dot", "latin-1-sig", "arabic-sig", "short-sig"])
def test_hmac_accepts_only_the_canonical_spelling(token1):
    verifier = HmacVerifier("secret", clock=lambda: NOW)
    verifier.verify("123", 1, "a", GOOD)
    with pytest.raises(GruError) as info:
        verifier.verify("123", 1, "a", token1)
    assert info.value.code is Code.TOKEN1_REJECTED


@pytest.fixture(scope="module")
def hmac_gru():
    server = start_gru({"GRU_TOKEN1_VERIFIER": "hmac", "GRU_TOKEN1_SECRET": "business-secret"})
    yield server
    server.stop()


@pytest.mark.parametrize("token1", ["².abc", "1." + "é" * 64, f"0{EXPIRES}.{SIGNATURE}"],
                         ids=["superscript", "non-ascii-sig", "leading-zero"])
def test_a_malformed_hmac_token1_gets_401_and_no_traceback(hmac_gru, token1):
    params = {"userType": "1", "userName": "a", "userId": "123", "token1": token1}
    response = requests.get(f"{hmac_gru.url}/ticket", params=params, timeout=5)
    assert response.status_code == 401
    assert response.json()["errorCode"] == 401 and "token1" in response.json()["msg"]
    good = sign_token1("business-secret", "123", 1, int(time.time()) + 60)
    assert requests.get(f"{hmac_gru.url}/ticket", params=params | {"token1": good}, timeout=5).status_code == 200
    assert "Traceback" not in hmac_gru.log_tail(200)


class BusinessSystem(BaseHTTPRequestHandler):
    """A stand-in business system on loopback whose answer is chosen by token1."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        token = body["token1"]
        if token == "slow":
            time.sleep(2)
        status, answer = {"good": (200, {"valid": True}), "bad": (200, {"valid": False}), "one": (200, {"valid": 1}),
                          "text": (200, {"valid": "true"}), "denied": (403, {}), "unauthorized": (401, {}),
                          "broken": (500, {}), "notjson": (200, None)}.get(token, (200, {}))
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"<html>" if answer is None else json.dumps(answer).encode())

    def log_message(self, *args):
        pass


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the slow answer finds its client gone: expected


@pytest.fixture(scope="module")
def business_url():
    server = QuietServer(("127.0.0.1", 0), BusinessSystem)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/verify"
    server.shutdown()


def test_http_accepts_when_the_business_system_says_valid(business_url):
    HttpVerifier(business_url, timeout=1).verify("1", 0, "a", "good")


@pytest.mark.parametrize(("token1", "code"), [
    ("bad", Code.TOKEN1_REJECTED), ("denied", Code.TOKEN1_REJECTED), ("unauthorized", Code.TOKEN1_REJECTED),
    ("missing", Code.TOKEN1_REJECTED), ("one", Code.TOKEN1_REJECTED), ("text", Code.TOKEN1_REJECTED),  # only true
    ("broken", Code.UNAVAILABLE), ("notjson", Code.UNAVAILABLE), ("slow", Code.UNAVAILABLE),
])
def test_http_maps_the_business_systems_answer(business_url, token1, code):
    started = time.monotonic()
    with pytest.raises(GruError) as info:
        HttpVerifier(business_url, timeout=0.5).verify("1", 0, "a", token1)
    assert info.value.code is code
    assert time.monotonic() - started < 1.5  # a slow business system never hangs the ticket


def test_http_unreachable_business_system_is_unavailable():
    with pytest.raises(GruError) as info:
        HttpVerifier("http://127.0.0.1:9/verify", timeout=0.5).verify("1", 0, "a", "good")
    assert info.value.code is Code.UNAVAILABLE


def test_a_verifier_that_does_not_implement_verify_cannot_be_made():
    class Forgetful(Token1Verifier):  # a custom verifier missing its check must not accept everyone
        name = "forgetful"

    with pytest.raises(TypeError):
        Forgetful()


def test_token1_up_to_4096_characters_reaches_the_verifier_and_longer_is_refused():
    backend = MemoryBackend()
    backend.heartbeat(Instance("node_1:1:a", "node_1", "http://127.0.0.1:1", 0, "up"))
    tickets = TicketService(AcceptVerifier(), TokenService("k" * 32, ttl=60), NodeDirectory(backend), {1: "STUDENT"})
    query = {"userType": "1", "userName": "a", "userId": "123"}
    assert tickets.issue(query | {"token1": "t" * 4096}, "http://127.0.0.1:1")["token"]
    with pytest.raises(GruError) as info:
        tickets.issue(query | {"token1": "t" * 4097}, "http://127.0.0.1:1")
    assert info.value.code is Code.BAD_REQUEST and "4096" in info.value.message
