"""Four curators of a team decide at once on one server, signed in through a real identity provider: nothing is
lost or misattributed. The server, the provider and the hostile workspace are test_team_browser.py's; this test is
in a file of its own so that pytest-xdist (`--dist loadfile`) runs it beside that file's other tests (together they
held one worker for three and a half minutes).
"""
from __future__ import annotations

import re
import time

from leakcore.api import Project

from test_team_browser import (CURATORS, DECISIONS_EACH, HandMadeClient, Visitor, _launch,  # noqa: F401
                               pytestmark, team_server)


def test_four_curators_decide_at_once_and_nothing_is_lost_or_misattributed(team_server):
    """4 curators sign in (Chromium, the provider), then decide DECISIONS_EACH pairs each at the same time on one
    workspace, each from a thread of its own speaking the browser's protocol with their own session cookies (four
    Chromium pages clicking 400 times would measure the 2-core test machine, not the server). Every click is one
    decision, in its curator's name, on the pair that curator was shown."""
    import threading

    from playwright.sync_api import sync_playwright
    from streamlit.proto.WidgetStates_pb2 import WidgetState

    url, ws_path, _ = team_server
    jars = {}
    with sync_playwright() as p:
        browser = _launch(p)
        for curator in CURATORS:
            v = Visitor(browser, url)
            v.sign_in(curator)
            jars[curator] = v.context.cookies()
        browser.close()
    from urllib.parse import urlencode

    flagged = Project.open(ws_path).checks.findings()
    bulk = sorted({(e, t) for e, t in zip(flagged["eval_item_id"], flagged["train_item_id"]) if e.startswith("bulk/")})
    assert len(bulk) >= len(CURATORS) * DECISIONS_EACH
    assigned = {c: bulk[k * DECISIONS_EACH:(k + 1) * DECISIONS_EACH] + [bulk[-1]] for k, c in enumerate(CURATORS)}
    id_re = re.compile(r"\*\*id\*\* `([^`]*)`")
    shown: dict[str, list] = {c: [] for c in CURATORS}
    errors: list[str] = []
    start = threading.Barrier(len(CURATORS))

    def curate(curator: str) -> None:
        client = HandMadeClient(url, jars[curator])
        try:
            pairs = assigned[curator]  # each opened by its pair link; a click decides the pair shown before it
            drawn = client.run("Review", query=urlencode({"eval": pairs[0][0], "train": pairs[0][1]}))
            start.wait()
            for i in range(DECISIONS_EACH):
                ids = id_re.findall(client.words(drawn))
                decision = ("hard", "not_leak")[i % 2]
                if len(ids) != 2 or any(e.WhichOneof("type") == "exception" for e in drawn):
                    errors.append(f"{curator}: run {i}: {client.words(drawn)[:500]}")
                    return
                if tuple(ids) != pairs[i]:
                    errors.append(f"{curator}: run {i} shows {ids}, not {pairs[i]}")
                    return
                shown[curator].append((ids[0], ids[1], decision))
                click = WidgetState(id=client.button_id(drawn, f"decide_{decision}"), trigger_value=True)
                drawn = client.run("Review", (click,), query=urlencode({"eval": pairs[i + 1][0],
                                                                        "train": pairs[i + 1][1]}))
        except Exception as exc:  # noqa: BLE001 - reported with the curator's name below
            errors.append(f"{curator}: {exc!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=curate, args=(c,)) for c in CURATORS]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0
    assert not errors, errors
    history = Project.open(ws_path).decisions.history()
    for curator in CURATORS:
        mine = history[history["reviewer"] == curator]
        recorded = sorted(zip(mine["eval_item_id"], mine["train_item_id"], mine["decision"]))
        assert len(shown[curator]) == DECISIONS_EACH
        assert recorded == sorted(shown[curator]), curator  # none lost, none in another's name, none extra
    assert len({(e, t) for c in CURATORS for e, t, _ in shown[c]}) == len(CURATORS) * DECISIONS_EACH
    print(f"{len(CURATORS)} curators x {DECISIONS_EACH} decisions at once through the server in {elapsed:.0f} s")
