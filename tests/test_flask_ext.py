"""``Gru(app)`` / ``gru.init_app(app)`` inside a Flask application that has routes, an error page
and a config of its own, served by gunicorn with the gevent-websocket worker like Gru itself."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import SECRET, get_ticket
from flask import Flask
from support.processes import start_gunicorn

from gru import Gru
from gru.flask_ext import settings_from_config

KEY = "school-key-0123456789abcdef"


def start_host(factory: bool, config: str | None = None):
    env = {"HOST_GRU_SECRET": SECRET, "HOST_GRU_NODE_NAME": "school_node", "HOST_GRU_API_KEYS": f"school:{KEY}",
           "HOST_GRU_AUTH_TIMEOUT": "2"}
    if factory:
        env["HOST_FACTORY"] = "1"
    return start_gunicorn("host_app:app", env=env, config=config, extra_args=["--pythonpath", "tests/support"])


@pytest.fixture(scope="module", params=["Gru(app)", "init_app", "gru.gunicorn_conf"])
def host(request):
    config = "python:gru.gunicorn_conf" if request.param == "gru.gunicorn_conf" else None
    server = start_host(factory=request.param == "init_app", config=config)
    yield server
    server.stop()


def test_the_applications_own_routes_and_error_page_are_untouched(host):
    home = requests.get(f"{host.url}/", timeout=5)
    assert home.status_code == 200 and home.text == "<h1>Riverside Primary</h1>"
    assert requests.get(f"{host.url}/timetable", timeout=5).json() == {"monday": ["maths", "music"]}
    missing = requests.get(f"{host.url}/no-such-page", timeout=5)
    assert missing.status_code == 404 and missing.text == "<p>no such page at the school</p>"


def test_tickets_and_sockets_work_inside_the_application(host, clients, group):
    assert requests.get(f"{host.url}/healthz", timeout=5).json()["node"] == "school_node"  # from app.config
    ticket = get_ticket(host, "s1")
    assert ticket["addr"] == host.url and ticket["name"] == "school_node"
    teacher = clients.authed("node4", host, "t1", group, user_type=0)
    student = clients.authed("python", host, "s1", group)
    teacher.emit("msg", json.dumps({"type": 1, "content": "page 3"}))
    assert teacher.wait_for("msg_result")["success"] is True
    assert student.wait_for("msg")["content"] == "page 3"
    pushed = requests.post(f"{host.url}/api/push", json={"groupId": group, "content": "bell"},
                           headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
    assert pushed.status_code == 200
    assert student.wait_for("msg")["from"] == {"id": "system", "type": -1, "name": "school"}


def test_metrics_count_the_applications_gru_traffic(host):
    get_ticket(host, "s-metrics")
    metrics = requests.get(f"{host.url}/metrics", timeout=5)
    assert metrics.status_code == 200
    assert 'gru_ticket_requests_total{result="ok"}' in metrics.text


def test_gru_errors_keep_their_json_shape_inside_the_application(host):
    bad = requests.get(f"{host.url}/ticket", params={"userType": "x"}, timeout=5)
    assert bad.status_code == 400 and bad.json()["errorCode"] == 400
    assert requests.post(f"{host.url}/api/push", data="{", timeout=5,
                         headers={"Authorization": f"Bearer {KEY}"}).json()["errorCode"] == 400


def test_an_application_that_already_routes_a_gru_path_is_told_which():
    app = Flask("clash")

    @app.route("/healthz")
    def own_health():
        return "mine"

    with pytest.raises(ValueError, match="/healthz"):
        Gru(app)
    assert "gru" not in app.extensions


def test_settings_come_from_the_application_config():
    settings = settings_from_config({"GRU_NODE_NAME": "n7", "GRU_LEGACY_EIO3": False, "GRU_AUTH_TIMEOUT": 5,
                                     "GRU_DEMO": None, "SECRET_KEY": "flask's own", "DEBUG": True})
    assert (settings.node_name, settings.legacy_eio3, settings.auth_timeout, settings.demo) == ("n7", False, 5.0, None)
