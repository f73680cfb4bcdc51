"""The provider registry: a provider added in one file (tests/plugin_provider.py) runs through the CLI, and
nothing else in the code needs to name it; capabilities drive what the run says and how it steers."""

from __future__ import annotations

import inspect
import re
import sqlite3

import pytest
import yaml

from agent import providers
from agent.audit.diversity import Shortfall, steering
from tests.plugin_provider import ParrotProvider
from tests.test_generate import small_plan


@pytest.fixture
def parrot(monkeypatch):
    """The registry with the test's provider added through the public hook, restored afterwards."""
    monkeypatch.setattr(providers, "_registry", dict(providers._registry))
    providers.register("parrot", "tests.plugin_provider:ParrotProvider")
    ParrotProvider.made.clear()
    return ParrotProvider


def parrot_plan(tmp_path, total=60, **options):
    path = small_plan(tmp_path, total=total)
    data = yaml.safe_load(path.read_text())
    data["generation"].update(provider="parrot", model="parrot-1", provider_options=options or None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_a_provider_in_one_file_runs_through_the_cli(tmp_path, run_cli, parrot):
    plan = parrot_plan(tmp_path, seed_offset=3)
    r = run_cli("estimate", "--plan", str(plan))
    assert r.code == 0, r.err
    assert "parrot/parrot-1" in r.out and "unknown" not in r.out   # priced by the provider's own lookup

    out = tmp_path / "out"
    r = run_cli("generate", "--plan", str(plan), "--outputs", str(out), "--no-export")
    assert r.code == 0, r.err
    assert "60/60 examples accepted" in r.err
    assert "temperature is not adjustable for provider parrot" in r.err   # its capability, said at start
    assert "budget: $" in r.err                                           # a default cap from its price
    spent = re.search(r"calls, \$([0-9.]+) spent", r.err)
    assert spent and float(spent.group(1)) > 0                           # its price reached the spend
    assert parrot.made == [{"model": "parrot-1", "seed_offset": 3}]       # plan options reached the class
    assert parrot.sent and all(req.model == "parrot-1" for req in parrot.sent)
    [folder] = [p for p in out.iterdir() if p.is_dir()]   # the run folder, named after the plan
    con = sqlite3.connect(folder / "ledger.sqlite")
    assert con.execute("SELECT COUNT(*) FROM examples WHERE status='accepted'").fetchone()[0] == 60


def test_override_flag_takes_the_new_provider_and_its_default_model(tmp_path, run_cli, parrot):
    plan = small_plan(tmp_path, total=60)   # a simulated plan
    r = run_cli("estimate", "--plan", str(plan), "--provider", "parrot")
    assert r.code == 0, r.err
    assert "parrot/parrot-1" in r.out


def test_provider_options_are_checked_by_the_provider(tmp_path, run_cli, parrot):
    plan = parrot_plan(tmp_path, seed_offset=3, temprature=0.5)
    r = run_cli("generate", "--plan", str(plan), "--outputs", str(tmp_path / "out"))
    lines = r.err.strip().splitlines()
    assert r.code == 2 and len(lines) == 1, r.err
    assert "provider_options.temprature" in lines[0] and "seed_offset" in lines[0]
    assert not (tmp_path / "out").exists()   # nothing created for bad input


def test_built_in_providers_take_no_unknown_options(tmp_path, run_cli):
    path = small_plan(tmp_path, total=60)
    data = yaml.safe_load(path.read_text())
    data["generation"]["provider_options"] = {"extra_body": {"top_k": 20}}   # openai's, not simulated's
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    r = run_cli("plan", str(path), "--show")
    assert r.code == 2 and "provider_options.extra_body" in r.err and "drift" in r.err


def test_unknown_names_list_registered_providers(run_cli, parrot):
    r = run_cli("estimate", "--plan", "plans/example.yaml", "--provider", "nope")
    assert r.code == 2
    assert "unknown provider 'nope'; choose one of: simulated, openai, anthropic, parrot" in r.err


def test_interview_offers_registered_providers(parrot):
    from agent.interview import QUESTIONS

    q = next(q for q in QUESTIONS if q.key == "provider")
    assert q.dynamic_parse({})("parrot") == "parrot"
    model = next(q for q in QUESTIONS if q.key == "model")
    assert model.default({"provider": "parrot"}) == "parrot-1"


def test_anthropic_temperature_capability_matches_the_sdk():
    """The installed anthropic SDK's messages.create has no sampling control; if one appears, use it and
    turn the capability on (this test then fails as a reminder)."""
    from anthropic.resources.messages import AsyncMessages

    from agent.providers.anthropic import AnthropicProvider

    params = set(inspect.signature(AsyncMessages.create).parameters)
    sampling = params & {"temperature", "top_p", "top_k"}
    assert AnthropicProvider.capabilities.temperature == bool(sampling)


def test_steering_without_temperature_uses_the_other_levers():
    short = [Shortfall("mean_ttr", 0.3, 0.4, 0.4, "TTR low"), Shortfall("ngram_overlap", 0.2, 0.1, 0.1, "overlap high")]
    with_t = steering(short)
    without = steering(short, temperature=False)
    assert with_t["temperature_step"] > 0
    assert "temperature_step" not in without
    assert without["avoid_list_size"] > 0 and without["prefer_least_used_topics"] is True
    only_ttr = steering(short[:1], temperature=False)   # wording alone falls short: the avoid list still comes
    assert "temperature_step" not in only_ttr and only_ttr["avoid_list_size"] > 0


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_capabilities_and_options_on_the_wire(tmp_path, run_cli, monkeypatch, provider):
    """anthropic: said at start, no temperature sent; openai: temperature sent, plan options in the body."""
    from tests.fakeserver import FakeServer
    from tests.responders import simulated_responder
    from tests.test_engine_http import FAKE_KEY, plan_for

    monkeypatch.setenv("OPENAI_API_KEY" if provider == "openai" else "ANTHROPIC_API_KEY", FAKE_KEY)
    with FakeServer(responder=simulated_responder(seed=3), seed=5, max_requests=200, max_lifetime=60) as server:
        path = plan_for(tmp_path, provider, server.openai_url if provider == "openai" else server.anthropic_url)
        if provider == "openai":
            data = yaml.safe_load(path.read_text())
            data["generation"]["provider_options"] = {"extra_body": {"top_k": 20}}
            path.write_text(yaml.safe_dump(data, sort_keys=False))
        r = run_cli("generate", "--plan", str(path), "--outputs", str(tmp_path / "out"), "--no-export")
        assert r.code == 0, r.err
        bodies = [rec.body for rec in server.requests if isinstance(rec.body, dict)]
    assert bodies
    said = "temperature is not adjustable for provider anthropic" in r.err
    if provider == "anthropic":
        assert said and not any("temperature" in b for b in bodies)
    else:
        assert not said and bodies[0]["temperature"] == 0.8   # the plan's (steering may raise later ones)
        assert all(b.get("top_k") == 20 for b in bodies)   # extra_body is merged into the request body


def test_an_installed_package_adds_a_provider_by_entry_point(monkeypatch, tmp_path, run_cli):
    """A package that declares `[project.entry-points."datagen.providers"] parrot = "module:Class"`."""
    import importlib.metadata

    declared = importlib.metadata.EntryPoint("parrot", "tests.plugin_provider:ParrotProvider", "datagen.providers")
    seen = []

    def entry_points(group=None):
        seen.append(group)
        return [declared] if group == "datagen.providers" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(providers, "_registry", dict(providers._registry))
    monkeypatch.setattr(providers, "_entry_points_read", False)
    assert providers.get("simulated").name == "simulated" and seen == []   # built-ins never read entry points
    assert providers.get("parrot") is ParrotProvider and seen == ["datagen.providers"]
    r = run_cli("estimate", "--plan", str(small_plan(tmp_path, total=60)), "--provider", "parrot")
    assert r.code == 0 and "parrot/parrot-1" in r.out
