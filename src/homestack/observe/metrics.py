"""Prometheus metrics for the whole fleet from one scrape target.

* Per request, the OpenTelemetry GenAI metrics as exported to Prometheus, and
  request counts. They are recorded by the request log's writer thread from the
  records it already gets, so the request path does no extra work.
* Fleet state (queues, model states, memory, swaps) is read from the scheduler
  at scrape time: the scheduler owns it, the metrics only look.
* GPUs through NVML, and each runner's own ``/metrics`` (llama.cpp's ``llamacpp:*``, vLLM's
  ``vllm:*``), re-exported as ``llamacpp_*`` / ``vllm_*`` with a ``model`` label (``:`` is reserved
  for recording rules),
  and from those, each speculating model's acceptance rate.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from ..scheduler.state import COUNTER_REASONS
from .series import CounterSeries, HistogramSeries, families
from .speculative import acceptance

if TYPE_CHECKING:
    from ..planner.devices import GpuProvider
    from ..scheduler import Scheduler
    from .requestlog import RequestRecord

# Bucket boundaries from the OpenTelemetry GenAI semantic conventions.
_TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
_LOAD_BUCKETS = (0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)

OPERATIONS = {"/v1/chat/completions": "chat", "/v1/completions": "text_completion", "/v1/embeddings": "embeddings"}
_GENAI = ("gen_ai_request_model", "gen_ai_operation_name", "host")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self, scheduler: "Scheduler", host: str):
        self.host = host  # the label of requests this machine ran; a peer's name for those it ran
        self.lock = threading.Lock()  # the writer holds it per batch of records; a scrape while it reads
        self.ttft = HistogramSeries("gen_ai_server_time_to_first_token_seconds", "Time to generate the first token.",
                                    _GENAI, _TTFT_BUCKETS)
        self.tpot = HistogramSeries("gen_ai_server_time_per_output_token_seconds",
                                    "Time per output token after the first.", _GENAI, _TPOT_BUCKETS)
        self.duration = HistogramSeries("gen_ai_server_request_duration_seconds",
                                        "Generative AI server request duration.", (*_GENAI, "error_type"),
                                        _DURATION_BUCKETS)
        self.tokens = HistogramSeries("gen_ai_client_token_usage", "Input and output tokens per request.",
                                      (*_GENAI, "gen_ai_token_type"), _TOKEN_BUCKETS)
        self.requests = CounterSeries("homestack_requests", "Requests by model and HTTP status.", ("model", "status", "host"))
        self.key_requests = CounterSeries("homestack_key_requests", "Requests by API key name (never the secret).",
                                          ("key",))
        self.key_tokens = CounterSeries("homestack_key_tokens", "Tokens used by API key name, input and output.",
                                        ("key", "type"))
        self.key_rejections = CounterSeries("homestack_key_rejections", "Requests refused by API key name and "
                                            "reason (role, model, route, rpm, tpm, concurrency, expired, invalid).",
                                            ("key", "reason"))
        self.route_requests = CounterSeries("homestack_route_requests", "Requests to a route (virtual model) by "
                                            "the target that served and HTTP status.", ("route", "target", "status"))
        self.route_fallbacks = CounterSeries("homestack_route_fallbacks", "A route's targets that could not serve "
                                             "a request, which then went to the next.", ("route", "target"))
        self.load_duration = HistogramSeries("homestack_model_load_duration_seconds",
                                             "Seconds from starting a runner to ready.", ("model",), _LOAD_BUCKETS)
        self._series = (self.ttft, self.tpot, self.duration, self.tokens, self.requests, self.key_requests,
                        self.key_tokens, self.key_rejections, self.route_requests, self.route_fallbacks,
                        self.load_duration)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        self.registry.register(_FleetCollector(scheduler, scheduler.gpus))
        self._runners = _RunnerCollector()
        self.registry.register(self._runners)
        self._children: dict[tuple[str, str, str, str], tuple] = {}  # label lookups cached: observe runs per request

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            return families(self._series)

    def model_loaded(self, model: str, seconds: float) -> None:
        with self.lock:
            self.load_duration.observe(self.load_duration.child(model), seconds)

    def key_rejected(self, key: str, reason: str) -> None:
        """A request refused for its key (called on the event loop; rare, so the lock is fine)."""
        with self.lock:
            self.key_rejections.inc(key, reason)

    def observe(self, rec: "RequestRecord", duration: float) -> None:
        """Record one finished request; the caller (the request log's writer thread) holds ``lock``."""
        # A name no model answers to is the client's text: one label value for all, so
        # nobody can grow the series without bound.
        model = rec.runner or "(unknown)"
        operation = OPERATIONS.get(rec.path, "")
        error = "" if rec.status < 400 else rec.outcome
        host = rec.host or self.host
        key = (model, operation, error, host)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._label(model, operation, error, host)
        self.requests.inc(model, str(rec.status), host)
        if rec.route:  # a name from the fleet file, never the client's text
            self.route_requests.inc(rec.route, model, str(rec.status))
            for target in rec.fell_back_from:
                self.route_fallbacks.inc(rec.route, target)
        if rec.key:
            self.key_requests.inc(rec.key)
            if rec.tokens_in:
                self.key_tokens.add(rec.tokens_in, rec.key, "input")
            if rec.tokens_out:
                self.key_tokens.add(rec.tokens_out, rec.key, "output")
        duration_child, tokens_in, tokens_out, ttft, tpot = children
        if duration_child is None:  # not an OpenAI route, or no model took the request
            return
        self.duration.observe(duration_child, duration)
        if error:
            return
        if rec.tokens_in is not None:
            self.tokens.observe(tokens_in, rec.tokens_in)
        if rec.tokens_out is not None and tokens_out is not None:
            self.tokens.observe(tokens_out, rec.tokens_out)
        if rec.stream and rec.first_byte is not None:
            first = rec.first_byte - rec.started
            self.ttft.observe(ttft, first)
            if rec.tokens_out and rec.tokens_out > 1:
                self.tpot.observe(tpot, (duration - first) / (rec.tokens_out - 1))

    def _label(self, model: str, operation: str, error: str, host: str) -> tuple:
        if not operation or model == "(unknown)":
            return None, None, None, None, None
        return (
            self.duration.child(model, operation, host, error),
            self.tokens.child(model, operation, host, "input"),
            self.tokens.child(model, operation, host, "output") if operation != "embeddings" else None,
            self.ttft.child(model, operation, host),
            self.tpot.child(model, operation, host),
        )

    def render(self, runner_texts: dict[str, str | None]) -> bytes:
        """The exposition text; ``runner_texts`` are the runners' own /metrics bodies by model (None: failed)."""
        self._runners.texts = runner_texts
        return generate_latest(self.registry)


class _FleetCollector:
    """What only the gateway knows, read from the scheduler (and NVML) at scrape time."""

    def __init__(self, scheduler: "Scheduler", gpus: "GpuProvider | None"):
        self._scheduler = scheduler
        self._gpus = gpus

    def collect(self) -> Iterable[Metric]:
        s = self._scheduler
        states = ("stopped", "starting", "ready", "stopping")
        info = GaugeMetricFamily("homestack_model_info", "1 per model: its runner kind and version.",
                                 labels=["model", "runner", "version"])
        inflight = GaugeMetricFamily("homestack_requests_in_flight", "Requests being served.", labels=["model"])
        slots = GaugeMetricFamily("homestack_model_slots", "Requests the model serves at once (its slots).",
                                  labels=["model"])
        queue = GaugeMetricFamily("homestack_queue_depth", "Requests waiting in the model's queue.", labels=["model"])
        capacity = GaugeMetricFamily("homestack_queue_capacity", "Requests that may wait before 429 "
                                     "(scheduling.queue_depth).", labels=["model"])
        state = GaugeMetricFamily("homestack_model_state", "1 for the model's current state.", labels=["model", "state"])
        estimated = GaugeMetricFamily("homestack_model_memory_estimated_bytes", "Planned memory of the model.",
                                      labels=["model", "device"])
        measured = GaugeMetricFamily("homestack_model_memory_measured_bytes", "Resident memory of its runner.",
                                     labels=["model"])
        models = s.running(everything=True)
        for m in models:
            name = m["name"]
            info.add_metric([name, m["runner"], m["version"] or ""], 1)
            inflight.add_metric([name], m["inflight"])
            if m["limit"]:
                slots.add_metric([name], m["limit"])
            queue.add_metric([name], m["queue"])
            capacity.add_metric([name], s.queue_depth)
            for each in states:
                state.add_metric([name, each], 1.0 if m["state"] == each else 0.0)
            if m["memory_measured"]:
                measured.add_metric([name], m["memory_measured"])
        for name, plan in s.capacity.models.items():
            for device, size in plan.need.items():
                estimated.add_metric([name, device], size)
        yield from (info, inflight, slots, queue, capacity, state, estimated, measured)
        yield from _counters(s.counters, [m["name"] for m in models])
        yield from _devices(s.device_report())
        yield from _gpu_metrics(self._gpus)


# Scheduler counter event -> (metric, help); its reasons are the scheduler's list. Every model x
# reason is exported from the start, at 0, so that rate() and increase() see the first event.
_EVENTS = {
    "loaded": ("homestack_model_loads", "Runners started, by reason."),
    "swap": ("homestack_swaps", "Loads that unloaded another model first."),
    "evicted": ("homestack_evictions", "Models unloaded, by reason."),
    "load_failed": ("homestack_model_load_failures", "Loads that failed or were cancelled."),
    "restart": ("homestack_runner_restarts", "Runners that exited on their own."),
}


def _counters(counters, models: list[str]) -> Iterable[Metric]:
    for event, reasons in COUNTER_REASONS.items():
        name, help_text = _EVENTS[event]
        family = CounterMetricFamily(name, help_text, labels=["model", "reason"] if reasons else ["model"])
        for model in models:
            for reason in reasons or ("",):
                count = counters.get((event, model, reason), 0)
                family.add_metric([model, reason] if reasons else [model], count)
        yield family


def _devices(devices: list[dict]) -> Iterable[Metric]:
    names = ("total", "free", "budget", "held_estimated", "held_measured")
    helps = {
        "total": "Device memory.", "free": "Device memory free now.", "budget": "What runners may hold here.",
        "held_estimated": "Planned memory of the resident models.", "held_measured": "Resident memory of the runners.",
    }
    metric_names = {"held_estimated": "homestack_memory_planned_bytes", "held_measured": "homestack_memory_measured_bytes"}
    for field in names:
        family = GaugeMetricFamily(metric_names.get(field, f"homestack_memory_{field}_bytes"), helps[field],
                                   labels=["device"])
        for d in devices:
            if field in d:
                family.add_metric([d["id"]], d[field])
        yield family


def _gpu_metrics(gpus: "GpuProvider | None") -> Iterable[Metric]:
    from ..planner.devices import Nvml

    stats = (gpus or Nvml()).stats()
    if not stats:
        return
    specs = {
        "memory_used_bytes": "GPU memory in use.", "memory_total_bytes": "GPU memory.",
        "utilization_ratio": "GPU busy fraction.", "temperature_celsius": "GPU temperature.",
        "power_watts": "GPU power draw.",
    }
    for field, help_text in specs.items():
        family = GaugeMetricFamily(f"homestack_gpu_{field}", help_text, labels=["gpu", "name"])
        for gpu in stats:
            if gpu.get(field) is not None:
                family.add_metric([gpu["id"], gpu["name"]], gpu[field])
        yield family


class _RunnerCollector:
    """Each runner's own metrics (its namespaced families), one family per name, with a ``model`` label added."""

    def __init__(self) -> None:
        self.texts: dict[str, str | None] = {}  # None: that runner's /metrics did not answer

    def collect(self) -> Iterable[Metric]:
        success = GaugeMetricFamily("homestack_runner_scrape_success",
                                    "1 if the runner's own /metrics answered this scrape.", labels=["model"])
        merged: dict[str, Metric] = {}
        accepted = GaugeMetricFamily(
            "homestack_speculative_acceptance_ratio",
            "Share of drafted tokens the model accepted since its runner started (speculative decoding).",
            labels=["model"])
        for model, text in self.texts.items():
            counts = acceptance(text)
            if counts and counts["acceptance"] is not None:
                accepted.add_metric([model], counts["acceptance"])
            try:
                families = list(text_string_to_metric_families(text)) if text is not None else None
            except ValueError:  # a runner answering garbage must not break the scrape
                families = None
            success.add_metric([model], 0.0 if families is None else 1.0)
            for family in families or ():
                if ":" not in family.name:  # only the runner's own namespace (llamacpp:, vllm:), not
                    continue  # its python_* and process_* metrics, which the gateway exports as its own
                name = _exported_name(family.name)
                target = merged.setdefault(name, Metric(name, family.documentation, family.type))
                for sample in family.samples:
                    target.add_sample(_exported_name(sample.name), {**sample.labels, "model": model}, sample.value)
        return [success, accepted, *merged.values()]


def _exported_name(runner_name: str) -> str:
    """llama.cpp's ``llamacpp:tokens_predicted_total`` as ``llamacpp_tokens_predicted_total`` (vLLM's ``vllm:`` alike)."""
    return runner_name.replace(":", "_")
