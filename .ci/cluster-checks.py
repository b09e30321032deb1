#!/usr/bin/env python3
"""Checks across real processes, run by .ci/cluster-smoke.sh on the cluster deploy/cluster.sh
started (three instances, PostgreSQL or SQLite, Redis, HAProxy):

1. the auth rate limit trips at the same count whichever instance answers;
2. votes cast at once on different instances give exact counts;
3. writers create films at once on every instance and through the proxy, one instance is
   killed (kill -9) in the middle, the writers go on; then every acknowledged write (201 with
   an id) is there with what was sent, and no film was written twice.

A request that fails or gets no answer is allowed (the client cannot know what happened); an
acknowledged write that is missing or wrong is not. The first violation exits with status 1.

    .ci/cluster-checks.py DIR APP_PORT PROXY_URL CA_FILE

DIR is the cluster's folder (its run/instance-N.pid files); instance N listens on
127.0.0.1:(APP_PORT + N). Instances trust X-Forwarded-For from 127.0.0.1 (the proxy's
address), so a request sent straight to an instance can act as any client address.
Python 3.11 standard library only.
"""

import http.client
import json
import os
import random
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

INSTANCES = 3
PASSWORD = "Cluster-checks-horse-battery-9"
REQUEST_TIMEOUT_SECS = 10
# The whole run, whatever hangs: the smoke test must end.
DEADLINE_SECS = 180
WRITERS = 6
WRITING_BEFORE_KILL_SECS = 3.0
WRITING_AFTER_KILL_SECS = 3.0
VICTIM = 3


class Violation(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Violation(message)


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: object


@dataclass
class Target:
    """Where a request goes: one instance's port, or the proxy."""

    name: str
    url: str
    tls: ssl.SSLContext | None = None

    def call(self, method, path, body=None, token=None, client_ip=None):
        """One request on a connection of its own; raises OSError or HTTPException when no
        answer comes back."""
        url = urllib.parse.urlsplit(self.url)
        if self.tls:
            conn = http.client.HTTPSConnection(
                url.hostname, url.port, context=self.tls, timeout=REQUEST_TIMEOUT_SECS
            )
        else:
            conn = http.client.HTTPConnection(url.hostname, url.port, timeout=REQUEST_TIMEOUT_SECS)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if client_ip:
            headers["X-Forwarded-For"] = client_ip
        try:
            conn.request(method, path, json.dumps(body) if body is not None else None, headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        parsed = json.loads(data) if data.startswith((b"{", b"[")) else None
        return Answer(response.status, response.headers, parsed)


class Cluster:
    def __init__(self, folder, app_port, proxy_url, ca_file):
        self.folder = folder
        self.instances = [
            Target(f"instance-{n}", f"http://127.0.0.1:{app_port + n}")
            for n in range(1, INSTANCES + 1)
        ]
        self.proxy = Target("proxy", proxy_url, ssl.create_default_context(cafile=ca_file))
        self.run = uuid.uuid4().hex[:8]
        # Client addresses of this run alone, so a second run on the same cluster starts with
        # fresh rate-limit budgets.
        self.network = f"10.{random.randrange(256)}.{random.randrange(256)}"

    def client_ip(self, host):
        return f"{self.network}.{host}"

    def instance(self, n):
        return self.instances[(n - 1) % INSTANCES]

    def kill(self, n):
        with open(os.path.join(self.folder, "run", f"instance-{n}.pid")) as pid_file:
            os.kill(int(pid_file.read()), signal.SIGKILL)

    def new_user(self, index):
        """Registers and logs in a user of this run, from a client address of its own so the
        auth limit (per client) is not spent; returns the access token."""
        username = f"ck{self.run}u{index}"
        client_ip = self.client_ip(100 + index)
        target = self.instance(index + 1)
        registered = target.call(
            "POST",
            "/api/v1/auth/register",
            {"username": username, "email": f"{username}@example.com", "password": PASSWORD},
            client_ip=client_ip,
        )
        # 202 whether or not the email was taken; the login below proves the account exists.
        check(registered.status == 202, f"registering {username}: {registered.status}")
        login = target.call(
            "POST",
            "/api/v1/auth/login",
            {"username": username, "password": PASSWORD},
            client_ip=client_ip,
        )
        check(login.status == 200, f"logging {username} in: {login.status}")
        return login.body["access_token"]


def rate_limit_is_shared(cluster):
    """RATE_LIMIT_AUTH (5/min per client in production): five attempts spread over the
    instances, then the sixth is refused, and so is every further one, on every instance.
    Three clients, so the sixth lands on each instance once."""
    for client in range(3):
        client_ip = cluster.client_ip(client + 1)
        limit = None
        for attempt in range(1, 7):
            target = cluster.instance(client + attempt)
            answer = target.call(
                "POST", "/api/v1/auth/refresh", {"refresh_token": "not-a-token"}, client_ip=client_ip
            )
            if limit is None:
                limit = int(answer.headers["X-RateLimit-Limit"])
                check(limit == 5, f"RATE_LIMIT_AUTH is {limit}, the check expects 5")
            if attempt <= limit:
                remaining = answer.headers.get("X-RateLimit-Remaining")
                check(
                    answer.status == 401 and remaining == str(limit - attempt),
                    f"client {client_ip}, attempt {attempt} on {target.name}: {answer.status}, "
                    f"{remaining} remaining (expected 401, {limit - attempt})",
                )
        for target in cluster.instances:
            answer = target.call(
                "POST", "/api/v1/auth/refresh", {"refresh_token": "not-a-token"}, client_ip=client_ip
            )
            check(
                answer.status == 429 and answer.headers.get("Retry-After"),
                f"client {client_ip} past its limit on {target.name}: {answer.status}",
            )
    print("ok: the auth limit trips at the 6th attempt whichever instance answers (3 clients)")


def votes_are_exact(cluster, tokens):
    """Every user votes on two instances at once; then a third dislike, a third withdraw and a
    third like again, each also sent to two instances at once."""
    created = cluster.proxy.call(
        "POST", "/api/v1/films", {"name": f"Votes {cluster.run}", "studio": "Counting"}, tokens[0]
    )
    check(created.status == 201, f"creating the film to vote on: {created.status}")
    path = f"/api/v1/films/{created.body['id']}/vote"

    def vote(user, choice):
        def on(target):
            if choice is None:
                return target.call("DELETE", path, token=tokens[user])
            return target.call("PUT", path, {"vote": choice}, tokens[user])

        return [on(cluster.instance(user + 1)), on(cluster.instance(user + 2))]

    def all_at_once(choices):
        with ThreadPoolExecutor(max_workers=2 * len(tokens)) as pool:
            answers = pool.map(lambda user: vote(user, choices(user)), range(len(tokens)))
            statuses = Counter(answer.status for pair in answers for answer in pair)
        check(statuses == {200: 2 * len(tokens)}, f"concurrent votes answered {dict(statuses)}")

    def counts_everywhere(likes, dislikes):
        for target in cluster.instances:
            film = target.call("GET", f"/api/v1/films/{created.body['id']}").body
            check(
                (film["likes"], film["dislikes"]) == (likes, dislikes),
                f"{target.name} counts {film['likes']} likes, {film['dislikes']} dislikes; "
                f"expected {likes}, {dislikes}",
            )

    all_at_once(lambda user: "like")
    counts_everywhere(len(tokens), 0)
    all_at_once(lambda user: ("dislike", None, "like")[user % 3])
    third = len(tokens) // 3
    counts_everywhere(third, third)
    print(f"ok: exact vote counts on every instance after {4 * len(tokens)} concurrent votes")


@dataclass
class Writes:
    """What one writer sent and what it was told."""

    sent: list = field(default_factory=list)
    acknowledged: list = field(default_factory=list)
    acknowledged_by: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)


def write_until(cluster, writer, token, stop, killed):
    """Writes films one after the other, turn by turn on each instance and the proxy, until
    `stop` is set. No retries: each name is sent once."""
    targets = cluster.instances + [cluster.proxy]
    writes = Writes()
    sequence = 0
    while not stop.is_set():
        target = targets[(writer + sequence) % len(targets)]
        film = {
            "name": f"Write {cluster.run} {writer}-{sequence}",
            "studio": f"Writer {writer}",
            "year": 1900 + sequence % 120,
        }
        sequence += 1
        writes.sent.append(film)
        try:
            answer = target.call("POST", "/api/v1/films", film, token)
        except (OSError, http.client.HTTPException) as error:
            answer = error
        # Told apart when the answer comes: a request cut short by the kill counts as after.
        phase = "after" if killed.is_set() else "before"
        if isinstance(answer, Exception):
            writes.failed[f"{target.name} {phase} the kill: {type(answer).__name__}"] += 1
            continue
        if answer.status == 201 and isinstance(answer.body, dict) and "id" in answer.body:
            writes.acknowledged.append((answer.body["id"], film))
            writes.acknowledged_by[f"{target.name} {phase} the kill"] += 1
        else:
            writes.failed[f"{target.name} {phase} the kill: {answer.status}"] += 1
    return writes


def writes_survive_a_kill(cluster, tokens):
    stop, killed = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        running = [
            pool.submit(write_until, cluster, writer, tokens[writer], stop, killed)
            for writer in range(WRITERS)
        ]
        time.sleep(WRITING_BEFORE_KILL_SECS)
        killed.set()
        cluster.kill(VICTIM)
        time.sleep(WRITING_AFTER_KILL_SECS)
        stop.set()
        writes = [writer.result() for writer in running]

    acknowledged_by = sum((w.acknowledged_by for w in writes), Counter())
    failed = sum((w.failed for w in writes), Counter())
    print(f"   acknowledged: {dict(sorted(acknowledged_by.items()))}")
    print(f"   failed: {dict(sorted(failed.items()))}")
    victim = cluster.instance(VICTIM).name
    # The check means something only if the victim took writes, and the others went on.
    check(acknowledged_by[f"{victim} before the kill"] > 0, f"{victim} took no write before the kill")
    for target in cluster.instances + [cluster.proxy]:
        if target.name != victim:
            check(
                acknowledged_by[f"{target.name} after the kill"] > 0,
                f"{target.name} took no write after the kill",
            )
    check(
        not any("before the kill" in reason for reason in failed),
        "a write failed before the kill",
    )

    survivor = cluster.instance(VICTIM + 1)
    acknowledged = [ack for w in writes for ack in w.acknowledged]
    for film_id, film in acknowledged:
        answer = survivor.call("GET", f"/api/v1/films/{film_id}")
        check(answer.status == 200, f"acknowledged film {film_id} ({film['name']}) is missing")
        stored = {key: answer.body[key] for key in film}
        check(stored == film, f"film {film_id} holds {stored}, was acknowledged as {film}")
    ids = Counter(film_id for film_id, _ in acknowledged)
    check(ids.most_common(1)[0][1] == 1, f"one id acknowledged twice: {ids.most_common(1)}")

    stored_names = Counter(film["name"] for film in films_named(survivor, f"Write {cluster.run} "))
    sent_names = {film["name"] for w in writes for film in w.sent}
    twice = [name for name, count in stored_names.items() if count > 1]
    check(not twice, f"written twice: {twice[:5]}")
    check(set(stored_names) <= sent_names, "a stored film that no writer sent")
    print(
        f"ok: {len(acknowledged)} acknowledged writes all stored once, as sent "
        f"({len(stored_names)} stored of {len(sent_names)} sent; {victim} killed mid-stream)"
    )


def films_named(target, prefix):
    """Every film whose name contains `prefix`, page by page."""
    query = urllib.parse.quote(prefix)
    films, offset = [], 0
    while True:
        page = target.call("GET", f"/api/v1/films?q={query}&limit=100&offset={offset}")
        check(page.status == 200, f"listing the written films: {page.status}")
        films += page.body["items"]
        offset += 100
        if offset >= page.body["total"]:
            return films


def give_up(_signal, _frame):
    print(f"FAIL: the cluster checks did not finish within {DEADLINE_SECS} s", file=sys.stderr)
    os._exit(1)


def main(folder, app_port, proxy_url, ca_file):
    signal.signal(signal.SIGALRM, give_up)
    signal.alarm(DEADLINE_SECS)
    cluster = Cluster(folder, int(app_port), proxy_url, ca_file)
    rate_limit_is_shared(cluster)
    with ThreadPoolExecutor(max_workers=INSTANCES) as pool:
        tokens = list(pool.map(cluster.new_user, range(9)))
    votes_are_exact(cluster, tokens)
    writes_survive_a_kill(cluster, tokens)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except Violation as violation:
        print(f"FAIL: {violation}", file=sys.stderr)
        sys.exit(1)
