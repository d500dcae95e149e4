"""Fire N simultaneous infer requests at a running server on this machine and print how long each caller waited.

    python apps/monailabel_hippocampus/scripts/concurrency.py --url http://127.0.0.1:8000 --model ann -n 50

First one request alone (after one warm-up request) gives the time of a single inference; then ``-n`` requests
start together, each from its own thread, cycling over the studies' images. Prints how many were accepted (200)
and refused (503: the model's queue was full, see ``queue_size``), the latency of every accepted request
(sorted), then first / median / p95 / last of those, the ``Retry-After`` the refused ones got, how long
``GET /info/`` took while the queue ran, and exits 1 if any request got another answer.

Loopback only (the URL must name localhost, 127.0.0.1 or ::1), at most 200 requests, and every request gives
up after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

MAX_REQUESTS = 200


def _loopback_url(url: str) -> str:
    host = urllib.parse.urlsplit(url).hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"error: --url {url}: this script talks to a server on this machine only (loopback).")
    return url.rstrip("/")


def infer_once(url: str, model: str, image: str, timeout: float, output: str = "image") -> tuple[int, float]:
    """One ``POST /infer/{model}?image=...&output=...``, answer read in full: (HTTP status, seconds)."""
    status, seconds, _ = infer_full(url, model, image, timeout, output)
    return status, seconds


def infer_full(url: str, model: str, image: str, timeout: float, output: str = "image") -> tuple[int, float, str]:
    """:func:`infer_once`, and the answer's ``Retry-After`` header (empty when absent)."""
    query = urllib.parse.urlencode({"image": image, "output": output})
    request = urllib.request.Request(f"{url}/infer/{model}?{query}", data=b"", method="POST")
    start, retry = time.perf_counter(), ""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        status, retry = e.code, e.headers.get("Retry-After", "")
        e.read()
    except OSError:  # timeout, connection refused or reset
        status = 0
    return status, time.perf_counter() - start, retry


def images(url: str, timeout: float = 30) -> list[str]:
    with urllib.request.urlopen(f"{url}/datastore/?output=all", timeout=timeout) as response:
        return sorted(json.loads(response.read())["objects"])


def measure(
    url: str, model: str, n: int, timeout: float = 600, image_ids: list[str] | None = None, output: str = "image"
) -> dict:
    """Single-inference time, then ``n`` concurrent requests; returns the figures (seconds)."""
    url = _loopback_url(url)
    if not 1 <= n <= MAX_REQUESTS:
        raise SystemExit(f"error: -n {n}: between 1 and {MAX_REQUESTS}.")
    image_ids = image_ids or images(url)
    if not image_ids:
        raise SystemExit(f"error: {url}: the studies folder has no images.")
    warm = infer_once(url, model, image_ids[0], timeout, output)
    status, single = infer_once(url, model, image_ids[0], timeout, output)
    if warm[0] != 200 or status != 200:
        raise SystemExit(f"error: a single request for model {model!r} failed (HTTP {status or 'no answer'}).")

    barrier = threading.Barrier(n)  # the n requests leave together

    def one(i: int) -> tuple[int, float, str]:
        barrier.wait()
        return infer_full(url, model, image_ids[i % len(image_ids)], timeout, output)

    info_s: list[float] = []

    def probe() -> None:  # is the server still answering while the queue runs?
        time.sleep(min(1.0, single))
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(f"{url}/info/", timeout=timeout) as response:
                response.read()
            info_s.append(time.perf_counter() - start)
        except OSError:
            pass

    prober = threading.Thread(target=probe)
    prober.start()
    with ThreadPoolExecutor(max_workers=n) as pool:
        results = list(pool.map(one, range(n)))
    prober.join()
    latencies = sorted(seconds for code, seconds, _ in results if code == 200) or [float("nan")]
    return {
        "model": model,
        "output": output,
        "n": n,
        "single_s": single,
        "ok": sum(code == 200 for code, _, _ in results),
        "refused": sum(code == 503 for code, _, _ in results),
        "retry_after_s": sorted({int(retry) for code, _, retry in results if code == 503 and retry.isdigit()}),
        "refused_latencies_s": sorted(seconds for code, seconds, _ in results if code == 503),
        "latencies_s": latencies,
        "first_s": latencies[0],
        "median_s": statistics.median(latencies),
        "p95_s": latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))],
        "last_s": latencies[-1],
        "statuses": sorted({code for code, _, _ in results}),
        "info_during_queue_s": info_s[0] if info_s else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server (loopback only)")
    parser.add_argument("--model", default="ann", help="model to run (default: ann, the fast one)")
    parser.add_argument("-n", type=int, default=50, help=f"simultaneous requests (1-{MAX_REQUESTS}, default 50)")
    parser.add_argument("--output", default="image", choices=["image", "json", "all"], help="answer format")
    parser.add_argument("--timeout", type=float, default=900, help="seconds before a request gives up")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    r = measure(args.url, args.model, args.n, args.timeout, output=args.output)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"model {r['model']} (output={r['output']}): single inference {r['single_s']:.2f} s; "
            f"{r['n']} simultaneous requests:"
        )
        print(f"{r['ok']} accepted (200), {r['refused']} refused (503, Retry-After {r['retry_after_s']} s)")
        print("latencies of the accepted (s): " + " ".join(f"{s:.2f}" for s in r["latencies_s"]))
        print(
            f"first {r['first_s']:.2f} s, median {r['median_s']:.2f} s, p95 {r['p95_s']:.2f} s, "
            f"last {r['last_s']:.2f} s; {r['ok']}/{r['n']} answered 200 (statuses {r['statuses']})"
        )
        if r["refused"]:
            print(f"refusals answered in at most {max(r['refused_latencies_s']):.3f} s")
        info = r["info_during_queue_s"]
        print(f"GET /info/ during the queue: {f'{info:.3f} s' if info is not None else 'no answer'}")
    return 0 if r["ok"] + r["refused"] == r["n"] else 1


if __name__ == "__main__":
    sys.exit(main())
