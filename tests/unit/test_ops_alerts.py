"""ops/ and docs/RUNBOOK.md against the code.

Every alert rule and alert policy is tied to something that really exists:
- each metric named in a PromQL expression or a Cloud Monitoring filter is registered in
  core/metrics.py (with prometheus_client's exposition suffixes: _total, _bucket, _count, _sum),
  each label it uses is one of that metric's labels, and each literal label value appears in the code;
- each logger and log message named in a log-based condition is one the code writes (its logger's
  logging.getLogger name, its log call's format string), and each jsonPayload field is one it passes;
- each runbook section an alert points to exists, and each tokenbank command in the runbook and the
  policies' documentation parses with the real CLI parser.

No sockets: YAML, the metric registry, the source's syntax trees and argparse. Where promtool or the
Google Cloud SDK is installed, they check syntax and behaviour too, in a subprocess.
"""
from __future__ import annotations

import ast
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.metrics import MetricWrapperBase

from core import metrics as metrics_module

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
RULES = OPS / "prometheus" / "rules.yml"
POLICY_DIR = OPS / "cloud-monitoring"
POLICIES = sorted(POLICY_DIR.glob("*.yaml"))
RUNBOOK = ROOT / "docs" / "RUNBOOK.md"
SOURCE_DIRS = ("core", "worker", "web", "broker", "admin")


# --------------------------------------------------------------------------------------------
# What the code really has
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exposed:
    """One sample name as Prometheus sees it, and the metric behind it."""
    metric: str
    kind: str
    labels: frozenset


@lru_cache(maxsize=None)
def exposed() -> dict[str, Exposed]:
    names: dict[str, Exposed] = {}
    for obj in vars(metrics_module).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        name, kind, labels = obj._name, obj._type, frozenset(obj._labelnames)
        if kind == "counter":
            names[f"{name}_total"] = Exposed(name, kind, labels)
        elif kind == "histogram":
            names[f"{name}_bucket"] = Exposed(name, kind, labels | {"le"})
            names[f"{name}_count"] = Exposed(name, kind, labels)
            names[f"{name}_sum"] = Exposed(name, kind, labels)
        elif kind == "gauge":
            names[name] = Exposed(name, kind, labels)
        else:
            raise AssertionError(f"{name}: teach this test the {kind} suffixes")
    return names


def gmp_metric_types() -> dict[str, Exposed]:
    """Managed Service for Prometheus's metric types: prometheus.googleapis.com/<name>/<kind>."""
    types = {}
    for sample, info in exposed().items():
        if info.kind == "counter":
            types[f"prometheus.googleapis.com/{sample}/counter"] = info
        elif info.kind == "gauge":
            types[f"prometheus.googleapis.com/{sample}/gauge"] = info
        elif info.kind == "histogram" and sample.endswith("_bucket"):
            types[f"prometheus.googleapis.com/{info.metric}/histogram"] = Exposed(
                info.metric, info.kind, info.labels - {"le"})
    return types


@dataclass(frozen=True)
class LogCall:
    logger: str | None
    level: str
    fmt: str

    @property
    def sample(self) -> str:
        """The message as it would read, with each %-placeholder filled in."""
        text = re.sub(r"%[-#0 +]*\d*(?:\.\d+)?[sdifr]", "X", self.fmt)
        return text.replace("%%", "%")

    @property
    def has_placeholders(self) -> bool:
        return self.sample != self.fmt.replace("%%", "%")


LEVELS = {"debug": "DEBUG", "info": "INFO", "warning": "WARNING", "error": "ERROR", "exception": "ERROR",
          "critical": "CRITICAL"}


@dataclass
class Source:
    strings: set
    loggers: set
    calls: list


@lru_cache(maxsize=None)
def source() -> Source:
    strings, loggers, calls = set(), set(), []
    for directory in SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
            module_logger = None
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    strings.add(node.value)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr == "getLogger" and node.args and isinstance(node.args[0], ast.Constant):
                    loggers.add(node.args[0].value)
                    module_logger = node.args[0].value
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                        and node.func.attr in LEVELS and isinstance(node.func.value, ast.Name) \
                        and node.func.value.id == "log" and node.args \
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                    calls.append(LogCall(module_logger, LEVELS[node.func.attr], node.args[0].value))
    return Source(strings, loggers, calls)


def test_the_metric_catalog_matches_what_prometheus_client_exposes():
    """The suffix rules above agree with the exposition: every TYPE line names a known sample family."""
    families = {}
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("# TYPE tokenbank_"):
            _, _, name, kind = line.split()
            families[name] = kind
    ours = {info.metric for info in exposed().values()}
    assert len(ours) >= 15
    for metric in ours:
        kind = next(i.kind for i in exposed().values() if i.metric == metric)
        family = f"{metric}_total" if kind == "counter" else metric
        assert families.get(family) == kind, (metric, kind, families.get(family))


def test_the_source_index_sees_the_log_calls():
    calls = {(c.logger, c.fmt) for c in source().calls}
    assert ("tokenbank.dead_letters", "event dead-lettered") in calls
    assert ("tokenbank.fulfilment", "purchase rejected: %s") in calls
    assert "tokenbank.webhook" in source().loggers


# --------------------------------------------------------------------------------------------
# PromQL
# --------------------------------------------------------------------------------------------
PROMQL_FUNCTIONS = {
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "count_values",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "vector", "scalar", "time",
    "abs", "absent", "absent_over_time", "clamp_min", "clamp_max", "ceil", "floor", "round", "sort", "sort_desc",
    "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "last_over_time",
    "changes", "resets", "timestamp",
}
PROMQL_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                   "offset", "bool", "inf", "nan"}
PROMQL_TOKEN = re.compile(r"""
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<group>\b(?:by|without|on|ignoring|group_left|group_right)\s*\((?P<grouplabels>[^)]*)\))
    | (?P<range>\[[^\]]*\])
    | (?P<number>(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?[smhdwy]*)
    | (?P<ident>(?<![\w:.])[A-Za-z_:][A-Za-z0-9_:]*)(?P<matchers>\s*\{[^}]*\})?
    | (?P<bare>\{[^}]*\})
""", re.X)
MATCHER = re.compile(r'\s*([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?\s*')
LITERAL_VALUE = re.compile(r"[\w .:-]+")


def _literal_values(op: str, value: str) -> list[str] | None:
    """The literal label values a matcher names (each alternative of a simple regex), or None."""
    if op in ("=", "!="):
        return [value]
    alternatives = [alt.replace("\\\\.", ".").replace("\\.", ".") for alt in value.split("|")]
    if all(LITERAL_VALUE.fullmatch(alt) for alt in alternatives):
        return alternatives
    return None


def check_promql(expr: str, recorded: dict[str, frozenset] | None = None) -> tuple[set[str], list[str]]:
    """The metric names an expression reads, and every problem found with them."""
    recorded = recorded or {}
    problems: list[str] = []
    used: dict[str, frozenset] = {}
    grouping: list[str] = []
    for token in PROMQL_TOKEN.finditer(expr):
        if token.group("bare"):
            problems.append(f"selector without a metric name: {token.group('bare')}")
            continue
        if token.group("group"):
            grouping += [label.strip() for label in token.group("grouplabels").split(",") if label.strip()]
            continue
        name = token.group("ident")
        if not name or name in PROMQL_KEYWORDS:
            continue
        is_call = expr[token.end():].lstrip().startswith("(") and not token.group("matchers")
        if name in PROMQL_FUNCTIONS:
            continue
        if is_call:
            problems.append(f"unknown PromQL function {name}()")
            continue
        if name in exposed():
            labels = exposed()[name].labels
        elif name in recorded:
            labels = recorded[name]
        else:
            problems.append(f"{name}: no such metric in core/metrics.py"
                            + (" (nor a recording rule)" if ":" in name else ""))
            continue
        used[name] = labels
        content = (token.group("matchers") or "").strip()[1:-1]
        pos = 0
        while pos < len(content):
            m = MATCHER.match(content, pos)
            if not m:
                problems.append(f"{name}: cannot read matchers {{{content}}}")
                break
            pos = m.end()
            label, op, value = m.groups()
            if label not in labels:
                problems.append(f"{name}: no label {label!r} (it has {sorted(labels)})")
                continue
            if label == "le":
                continue
            values = _literal_values(op, value)
            if values is None:
                problems.append(f"{name}{{{label}{op}{value!r}}}: keep regexes to literal alternatives")
                continue
            for literal in values:
                if literal not in source().strings:
                    problems.append(f"{name}{{{label}{op}...}}: no string {literal!r} in {', '.join(SOURCE_DIRS)}")
    all_labels = frozenset().union(*used.values()) if used else frozenset()
    for label in grouping:
        if label not in all_labels:
            problems.append(f"grouping by {label!r}, which none of {sorted(used)} has")
    if not used:
        problems.append("the expression reads no tokenbank metric")
    return set(used), problems


def test_the_promql_checker_catches_mistakes():
    assert check_promql('sum by (store) (increase(tokenbank_dead_letters_total[5m])) > 0')[1] == []
    assert check_promql('rate(tokenbank_dead_letters[5m])')[1]                       # no _total
    assert check_promql('tokenbank_dead_letters_total{queue="x"}')[1]                # no such label
    assert check_promql('tokenbank_dead_letters_total{store="s3"}')[1]               # no such value
    assert check_promql('sum by (reason) (tokenbank_credits_total)')[1]              # grouping label
    assert check_promql('rates(tokenbank_credits_total[5m])')[1]                     # typo'd function
    assert check_promql('tokenbank_webhook_to_credit_seconds_bucket{le="30"}')[1] == []
    assert check_promql('tokenbank_task_duration_seconds_count{result=~"fail.*"}')[1]  # clever regex
    assert check_promql('up == 0')[1]


# --------------------------------------------------------------------------------------------
# Cloud Logging filters
# --------------------------------------------------------------------------------------------
LOG_COMPARISON = re.compile(
    r'(?P<field>(?:jsonPayload|resource|severity|logName|timestamp)[\w.]*)\s*'
    r'(?P<op>=~|!~|!=|>=|<=|=|:|>|<)\s*'
    r'(?P<value>"(?:[^"\\]|\\.)*"|\*|\((?:[^()"]|"(?:[^"\\]|\\.)*")*\)|[\w.-]+)')
RESOURCE_TYPES = {"cloud_run_revision", "cloud_run_worker_pool", "cloud_run_job"}
RESOURCE_LABELS = {"service_name", "worker_pool_name", "job_name", "revision_name", "location"}
SEVERITIES = {"DEFAULT", "DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL", "ALERT", "EMERGENCY"}
STANDARD_FIELDS = {"message", "logger", "severity", "time", "stack_trace"}


def _unquote(value: str) -> str:
    return value[1:-1].replace('\\"', '"') if value.startswith('"') else value


def _message_matches(op: str, value: str, call: LogCall) -> bool:
    if op == "=":
        return not call.has_placeholders and call.fmt.replace("%%", "%") == value
    if op == "=~":
        return re.search(value, call.sample) is not None
    if op == ":":
        return value.lower() in call.sample.lower()
    return False


def check_log_filter(text: str) -> list[str]:
    problems: list[str] = []
    comparisons = []
    for m in LOG_COMPARISON.finditer(text):
        negated = re.search(r"\bNOT\s*\(?\s*$", text[:m.start()]) is not None
        comparisons.append((m.group("field"), m.group("op"), m.group("value"), negated))
    if not comparisons:
        return [f"no comparison found in {text!r}"]
    src = source()
    positive_loggers = {_unquote(v) for f, op, v, neg in comparisons
                        if f == "jsonPayload.logger" and op == "=" and not neg}
    for field, op, raw, negated in comparisons:
        value = _unquote(raw)
        if field == "severity":
            if value not in SEVERITIES:
                problems.append(f"severity {value!r}")
        elif field == "resource.type":
            values = re.findall(r'"([^"]*)"', raw) if raw.startswith("(") else [value]
            problems += [f"resource.type {v!r}" for v in values if v not in RESOURCE_TYPES]
        elif field == "jsonPayload.logger":
            if op == "=" and value not in src.loggers:
                problems.append(f"no logger {value!r} (loggers: {sorted(src.loggers)})")
            elif op == "=~" and not any(re.search(value, name) for name in src.loggers):
                problems.append(f"logger regex {value!r} matches no logger")
            elif op not in ("=", "=~"):
                problems.append(f"logger compared with {op}")
        elif field == "jsonPayload.message":
            if op not in ("=", "=~", ":"):
                problems.append(f"message compared with {op}")
                continue
            calls = [c for c in src.calls if _message_matches(op, value, c)]
            if not calls:
                problems.append(f"no log call writes a message {op} {value!r}")
            elif positive_loggers and not negated and not any(c.logger in positive_loggers for c in calls):
                problems.append(f"message {value!r} is written by {sorted({c.logger for c in calls})}, "
                                f"not by {sorted(positive_loggers)}")
        elif field.startswith("jsonPayload."):
            key = field.split(".")[1]
            if key not in STANDARD_FIELDS and key not in src.strings:
                problems.append(f"no log field {key!r} is passed anywhere")
            is_id = key.endswith("_id") or key.endswith("Id")  # event, session, user ids: data, not code
            if raw.startswith('"') and op == "=" and not is_id and value not in src.strings:
                problems.append(f"{field}: no string {value!r} in the code")
        elif field.startswith("resource.labels."):
            if field.split(".")[2] not in RESOURCE_LABELS:
                problems.append(f"unexpected resource label {field}")
        elif field == "timestamp":
            continue
        else:
            problems.append(f"unexpected field {field}")
    return problems


def test_the_log_filter_checker_catches_mistakes():
    good = 'jsonPayload.logger="tokenbank.dead_letters" AND jsonPayload.message="event dead-lettered"'
    assert check_log_filter(good) == []
    assert check_log_filter('jsonPayload.message="Failed to credit tokens"')
    assert check_log_filter('jsonPayload.logger="tokenbank.deadletters"')
    assert check_log_filter('jsonPayload.logger="tokenbank.webhook" AND jsonPayload.message="event dead-lettered"')
    assert check_log_filter('jsonPayload.message="purchase rejected: %s"')    # a formatted message is never equal
    assert check_log_filter('jsonPayload.message=~"^purchase rejected: "') == []
    assert check_log_filter('jsonPayload.session="cs_1"')                     # the field is session_id
    assert check_log_filter('textPayload:"Rate limit exceeded"')


# --------------------------------------------------------------------------------------------
# The runbook
# --------------------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


@lru_cache(maxsize=None)
def runbook_text() -> str:
    return RUNBOOK.read_text(encoding="utf-8")


@lru_cache(maxsize=None)
def runbook_headings() -> dict[str, str]:
    return {slug(m.group(1)): m.group(1).strip()
            for m in re.finditer(r"^#{2,4} (.+)$", runbook_text(), re.M)}


def runbook_anchor_problem(reference: str) -> str | None:
    path, _, anchor = reference.partition("#")
    if path != "docs/RUNBOOK.md" or not anchor:
        return f"runbook reference {reference!r} is not docs/RUNBOOK.md#section"
    if anchor not in runbook_headings():
        return f"docs/RUNBOOK.md has no section #{anchor}"
    return None


def runbook_title_problems(documentation: str) -> list[str]:
    """`Runbook: docs/RUNBOOK.md, "Title" and "Title".` names sections that exist."""
    m = re.search(r"Runbook: docs/RUNBOOK\.md, (.+)", documentation)
    if not m:
        return ["the documentation names no runbook section (Runbook: docs/RUNBOOK.md, \"Section\")"]
    titles = re.findall(r'"([^"]+)"', m.group(1))
    known = set(runbook_headings().values())
    return [f"docs/RUNBOOK.md has no section {t!r}" for t in titles if t not in known] or \
        ([] if titles else ["no quoted section title after Runbook:"])


# --------------------------------------------------------------------------------------------
# ops/prometheus/rules.yml
# --------------------------------------------------------------------------------------------
DURATION = re.compile(r"(\d+[smhdwy])+")


@lru_cache(maxsize=None)
def rules_doc() -> dict:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def all_rules() -> list[dict]:
    return [rule for group in rules_doc()["groups"] for rule in group["rules"]]


def recorded_series() -> dict[str, frozenset]:
    """Recording rules' names, with the labels their expressions can carry."""
    recorded: dict[str, frozenset] = {}
    for rule in all_rules():
        if "record" in rule:
            names, _ = check_promql(rule["expr"], recorded)
            labels = frozenset().union(*(exposed()[n].labels if n in exposed() else recorded[n] for n in names))
            recorded[rule["record"]] = labels - {"le"}
    return recorded


def test_every_file_in_ops_is_yaml_that_parses():
    files = [p for p in OPS.rglob("*") if p.is_file()]
    assert RULES in files and len(POLICIES) >= 10
    for path in files:
        assert path.suffix in (".yml", ".yaml"), f"{path}: ops/ holds YAML only"
        assert isinstance(yaml.safe_load(path.read_text(encoding="utf-8")), dict), path


def test_rules_file_shape():
    doc = rules_doc()
    assert set(doc) == {"groups"}
    group_names = [g["name"] for g in doc["groups"]]
    assert len(group_names) == len(set(group_names))
    alert_names = []
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "record" in rule:
                assert re.fullmatch(r"tokenbank:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
                assert set(rule) <= {"record", "expr", "labels"}
                continue
            alert_names.append(rule["alert"])
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
            assert DURATION.fullmatch(str(rule.get("for", "0m"))), rule["alert"]
            assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
            assert rule["labels"]["service"] == "tokenbank"
            assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]
    assert len(alert_names) == len(set(alert_names))


def test_every_rule_reads_real_metrics_and_labels():
    recorded: dict[str, frozenset] = {}
    problems = []
    for rule in all_rules():
        names, found = check_promql(rule["expr"], recorded)
        problems += [f"{rule.get('alert') or rule.get('record')}: {p}" for p in found]
        if "record" in rule:
            recorded[rule["record"]] = recorded_series()[rule["record"]]
    assert problems == []


def test_the_rules_cover_the_origin_documents_monitoring_section():
    """Purchase success rate, processing time, failed credits, security alerts, rate-limit triggers."""
    exprs = {rule["alert"]: rule["expr"] for rule in all_rules() if "alert" in rule}
    text = "\n".join(exprs.values()) + "\n" + "\n".join(r["expr"] for r in all_rules() if "record" in r)
    for metric in ("tokenbank_credits_total", "tokenbank_purchase_rejections_total",
                   "tokenbank_webhook_to_credit_seconds_bucket", "tokenbank_dead_letters_total",
                   "tokenbank_task_duration_seconds_count", "tokenbank_task_retries_total",
                   "tokenbank_enqueue_failures_total", "tokenbank_webhook_signature_failures_total",
                   "tokenbank_rate_limit_refusals_total", "tokenbank_velocity_alerts_total",
                   "tokenbank_reconciliation_findings_total", "tokenbank_audit_violations_total"):
        assert metric in text, f"no rule reads {metric}"
    assert "histogram_quantile(0.99" in text
    assert 'result="failed"' in exprs["TokenbankTaskFailed"]


def test_every_alert_links_an_existing_runbook_section():
    problems = [f"{rule['alert']}: {p}" for rule in all_rules() if "alert" in rule
                for p in [runbook_anchor_problem(rule["annotations"]["runbook"])] if p]
    assert problems == []


# --------------------------------------------------------------------------------------------
# ops/cloud-monitoring/*.yaml
# --------------------------------------------------------------------------------------------
CONDITION_KINDS = {"conditionThreshold", "conditionAbsent", "conditionMatchedLog",
                   "conditionPrometheusQueryLanguage", "conditionMonitoringQueryLanguage", "conditionSql"}
USED_KINDS = {"conditionThreshold", "conditionMatchedLog", "conditionPrometheusQueryLanguage"}
POLICY_FIELDS = {"displayName", "documentation", "userLabels", "conditions", "combiner", "enabled",
                 "notificationChannels", "alertStrategy", "severity"}
METRIC_FILTER = re.compile(r'(metric\.type|metric\.labels?\.\w+|resource\.type|resource\.labels?\.\w+)\s*'
                           r'(=|!=|=~|:)\s*"([^"]*)"')


@lru_cache(maxsize=None)
def policy(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def conditions() -> list[tuple[str, dict]]:
    return [(path.name, c) for path in POLICIES for c in policy(path)["conditions"]]


def check_threshold_filter(text: str) -> list[str]:
    problems, metric = [], None
    parts = METRIC_FILTER.findall(text)
    for field, op, value in parts:
        if field == "metric.type":
            metric = gmp_metric_types().get(value)
            if metric is None:
                problems.append(f"no metric type {value!r}; Managed Service for Prometheus has "
                                f"{sorted(gmp_metric_types())}")
        elif field == "resource.type" and value != "prometheus_target":
            problems.append(f"a Managed Service for Prometheus metric lives on prometheus_target, not {value}")
    if not any(field == "metric.type" for field, _, _ in parts):
        problems.append("the filter names no metric.type")
    for field, op, value in parts:
        if field.startswith("metric.label") and metric is not None:
            label = field.split(".")[-1]
            if label not in metric.labels:
                problems.append(f"{metric.metric} has no label {label!r}")
            elif value not in source().strings:
                problems.append(f"no string {value!r} in the code for label {label}")
    return problems


def test_every_policy_file_is_one_alert_policy():
    names = []
    for path in POLICIES:
        doc = policy(path)
        assert set(doc) <= POLICY_FIELDS, f"{path.name}: unknown fields {set(doc) - POLICY_FIELDS}"
        assert doc["displayName"].startswith("tokenbank: "), path.name
        names.append(doc["displayName"])
        assert doc["combiner"] in ("OR", "AND", "AND_WITH_MATCHING_RESOURCE"), path.name
        assert doc["severity"] in ("CRITICAL", "ERROR", "WARNING"), path.name
        assert doc["userLabels"] == {"service": "tokenbank"}, path.name
        assert doc["conditions"], path.name
        for condition in doc["conditions"]:
            kinds = set(condition) & CONDITION_KINDS
            assert len(kinds) == 1 and kinds <= USED_KINDS, f"{path.name}: {sorted(condition)}"
            assert set(condition) - kinds == {"displayName"}, path.name
        logs = [c for c in doc["conditions"] if "conditionMatchedLog" in c]
        if logs:
            # Cloud Monitoring requires a rate limit on log-based policies, and one condition only.
            assert len(doc["conditions"]) == 1, path.name
            assert re.fullmatch(r"\d+s", doc["alertStrategy"]["notificationRateLimit"]["period"]), path.name
        documentation = doc["documentation"]
        assert documentation["mimeType"] == "text/markdown" and documentation["content"].strip(), path.name
        assert "Tied to" in documentation["content"], path.name
    assert len(names) == len(set(names))


def test_every_promql_condition_reads_real_metrics_and_labels():
    problems = []
    for name, condition in conditions():
        spec = condition.get("conditionPrometheusQueryLanguage")
        if spec is None:
            continue
        assert set(spec) <= {"query", "duration", "evaluationInterval", "labels", "ruleGroup", "alertRule",
                             "disableMetricValidation"}, name
        assert re.fullmatch(r"\d+s", spec["duration"]) and re.fullmatch(r"\d+s", spec["evaluationInterval"])
        # Cloud Monitoring evaluates each query on its own: no recording rules there.
        _, found = check_promql(spec["query"], recorded=None)
        problems += [f"{name}: {p}" for p in found]
    assert problems == []


def test_every_threshold_condition_names_a_real_metric_type_and_labels():
    problems, seen = [], 0
    for name, condition in conditions():
        spec = condition.get("conditionThreshold")
        if spec is None:
            continue
        seen += 1
        problems += [f"{name}: {p}" for p in check_threshold_filter(spec["filter"])]
        assert spec["comparison"].startswith("COMPARISON_") and re.fullmatch(r"\d+s", spec["duration"]), name
        for aggregation in spec["aggregations"]:
            assert re.fullmatch(r"\d+s", aggregation["alignmentPeriod"]), name
    assert seen and problems == []


def test_the_threshold_checker_catches_mistakes():
    good = 'metric.type="prometheus.googleapis.com/tokenbank_dead_letters_total/counter" ' \
           'AND resource.type="prometheus_target" AND metric.label.store="redis"'
    assert check_threshold_filter(good) == []
    assert check_threshold_filter(good.replace("/counter", "/gauge"))
    assert check_threshold_filter(good.replace("store=", "queue="))
    assert check_threshold_filter(good.replace('"redis"', '"s3"'))
    assert check_threshold_filter(good.replace("prometheus_target", "cloud_run_revision"))


def test_every_log_condition_names_real_loggers_messages_and_fields():
    problems, seen = [], 0
    for name, condition in conditions():
        spec = condition.get("conditionMatchedLog")
        if spec is None:
            continue
        seen += 1
        assert set(spec) <= {"filter", "labelExtractors"}, name
        problems += [f"{name}: {p}" for p in check_log_filter(spec["filter"])]
        assert "jsonPayload.logger" in spec["filter"], f"{name}: tie the condition to a logger"
        for label, extractor in (spec.get("labelExtractors") or {}).items():
            m = re.fullmatch(r"EXTRACT\(jsonPayload\.(\w+)\)", extractor)
            if not m:
                problems.append(f"{name}: label {label}: {extractor!r}")
            elif m.group(1) not in STANDARD_FIELDS and m.group(1) not in source().strings:
                problems.append(f"{name}: label {label} extracts jsonPayload.{m.group(1)}, which no log passes")
    assert seen and problems == []


def test_the_policies_cover_the_origin_documents_monitoring_section():
    text = "\n".join(path.read_text(encoding="utf-8") for path in POLICIES)
    for signal in ("tokenbank_credits_total", "tokenbank_purchase_rejections_total",
                   "tokenbank_webhook_to_credit_seconds_bucket", 'jsonPayload.message="event dead-lettered"',
                   'tokenbank_task_duration_seconds_count{result="failed"}', "tokenbank_task_retries_total",
                   "tokenbank_rate_limit_refusals_total", "tokenbank_webhook_signature_failures_total",
                   'jsonPayload.message="ledger audit violation"', "tokenbank_reconciliation_findings_total",
                   'jsonPayload.message=~"^enqueue failed: "'):
        assert signal in text, f"no policy is tied to {signal}"


def test_every_policy_names_an_existing_runbook_section():
    problems = [f"{path.name}: {p}" for path in POLICIES
                for p in runbook_title_problems(policy(path)["documentation"]["content"])]
    assert problems == []


# --------------------------------------------------------------------------------------------
# Commands in the runbook and in the policies' documentation
# --------------------------------------------------------------------------------------------
PLACEHOLDER_INTS = {"AMOUNT": "1", "N": "1", "TOKENS": "1"}


def _commands(text: str) -> list[tuple[str, bool]]:
    """Shell lines from fenced blocks (continuations joined), and inline code spans (flagged)."""
    lines = []
    for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
        lines += [(line, False) for line in block.replace("\\\n", " ").splitlines()]
    text_only = re.sub(r"```.*?```", "", text, flags=re.S)
    lines += [(span, True) for span in re.findall(r"`([^`\n]+)`", text_only)]
    return [(line.strip(), inline) for line, inline in lines if line.strip()]


def cli_problems(text: str) -> tuple[int, list[str]]:
    from admin.cli import parser

    text = re.sub(r"\$\{log\.extracted_label\.\w+\}", "UID", text)
    problems, count = [], 0
    commands = parser()._subparsers._group_actions[0].choices
    for line, inline in _commands(text):
        argv = None
        if line.startswith("tokenbank ") and "[" not in line:
            argv = shlex.split(line)[1:]
        m = re.search(r"--args=-m,([\w.]+\.cli),(\S+)", line)
        if m and m.group(1) != "admin.cli":
            count += 1
            problems.append(f"`{line}`: the CLI is admin.cli, not {m.group(1)}")
            continue
        if m:
            argv = m.group(2).split(",")
        if argv is None:
            continue
        argv = [PLACEHOLDER_INTS.get(a, a) for a in argv]
        count += 1
        if inline and len(argv) == 1:  # prose naming a command ("`tokenbank user` shows...")
            if argv[0] not in commands:
                problems.append(f"`{line}`: admin/cli.py has no command {argv[0]!r}")
            continue
        try:
            parser().parse_args(argv)
        except SystemExit as exc:
            if exc.code != 0:
                problems.append(f"`{line}` does not parse with admin/cli.py")
    return count, problems


def log_filters(text: str) -> list[str]:
    text = re.sub(r"\$\{log\.extracted_label\.\w+\}", "X", text)
    found = re.findall(r"gcloud logging read '([^']+)'", text)
    found += re.findall(r"--log-filter='([^']+)'", text)
    return found


def test_every_tokenbank_command_in_the_runbook_parses():
    count, problems = cli_problems(runbook_text())
    assert count >= 20 and problems == []


def test_every_tokenbank_command_in_the_policies_parses():
    count, problems = 0, []
    for path in POLICIES:
        n, found = cli_problems(policy(path)["documentation"]["content"])
        count += n
        problems += [f"{path.name}: {p}" for p in found]
    assert count >= 5 and problems == []


def test_the_cli_check_catches_mistakes():
    assert cli_problems("`tokenbank ratelimit reset UID --operator NAME`") == (1, [])
    assert cli_problems("`tokenbank ratelimit clear UID`")[1]
    assert cli_problems("`tokenbank grant UID fifty --reason x`")[1]
    assert cli_problems("`gcloud run jobs execute tokenbank-cli --args=-m,admin.cli,events,failed`") == (1, [])
    assert cli_problems("`gcloud run jobs execute tokenbank-cli --args=-m,worker.cli,events,failed`")[1]
    assert cli_problems("`tokenbank grant UID 5 --reason x`")[1]  # no --operator


def test_every_log_filter_in_the_runbook_and_policies_is_real():
    filters = log_filters(runbook_text())
    for path in POLICIES:
        filters += log_filters(policy(path)["documentation"]["content"])
    assert len(filters) >= 15
    problems = [f"{f!r}: {p}" for f in filters for p in check_log_filter(f)]
    assert problems == []


def test_every_runbook_link_points_to_a_section():
    anchors = re.findall(r"\]\(#([^)]+)\)", runbook_text())
    assert anchors
    assert sorted(set(a for a in anchors if a not in runbook_headings())) == []


def test_the_runbook_retires_the_origin_documents_habits():
    text = runbook_text()
    assert "tokenbank ratelimit reset UID --operator NAME" in text
    assert "doc.reference.delete()" not in text and ".delete()" not in text
    assert "--max-instances=1" not in text.replace("No `--max-instances=1`", "")
    for needed in ("update-traffic tokenbank-web", "--to-revisions=", "deploy --only firestore:rules",
                   "STRIPE_WEBHOOK_SECRET", "comma-separated", "/readyz", "/metrics", "Flower"):
        assert needed in text, needed


@lru_cache(maxsize=None)
def cloud_run_names() -> tuple[set, set] | None:
    path = ROOT / "cloudbuild.yaml"
    if not path.exists():
        return None
    services, pools = set(), set()
    for step in yaml.safe_load(path.read_text(encoding="utf-8"))["steps"]:
        args = [str(a) for a in step.get("args", [])]
        if "worker-pools" in args and "deploy" in args:
            pools.add(args[args.index("deploy") + 1])
        elif args[:2] == ["run", "deploy"]:
            services.add(args[2])
    return services, pools


def test_every_cloud_run_name_in_the_runbook_and_policies_is_deployed_by_cloudbuild():
    names = cloud_run_names()
    if names is None:
        pytest.skip("no cloudbuild.yaml")
    services, pools = names
    assert "tokenbank-web" in services and "tokenbank-worker" in pools
    text = runbook_text() + "\n".join(policy(p)["documentation"]["content"] for p in POLICIES)
    used_services = set(re.findall(r"gcloud run (?:services (?:logs read|describe|update-traffic|update|proxy)|deploy) "
                                   r"(tokenbank-[\w-]+)", text))
    used_services |= set(re.findall(r"--service=(tokenbank-[\w-]+)", text))
    used_pools = set(re.findall(r"worker-pools (?:logs read|describe|update-instance-split|update|deploy) "
                                r"(tokenbank-[\w-]+)", text))
    used_pools |= set(re.findall(r"--worker-pool=(tokenbank-[\w-]+)", text))
    used_pools |= set(re.findall(r'worker_pool_name="(tokenbank-[\w-]+)"', text))
    used_services |= set(re.findall(r'service_name="(tokenbank-[\w-]+)"', text))
    assert used_services and used_pools
    assert used_services - services == set() and used_pools - pools == set()


# --------------------------------------------------------------------------------------------
# Syntax and behaviour, where the tools are installed (a subprocess each; no network)
# --------------------------------------------------------------------------------------------
PROMTOOL = shutil.which("promtool")


def _promtool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_promtool_accepts_the_rules_and_every_policy_query(tmp_path):
    checked = _promtool(tmp_path, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    queries = [{"alert": f"Q{i}", "expr": c["conditionPrometheusQueryLanguage"]["query"]}
               for i, (_, c) in enumerate(conditions()) if "conditionPrometheusQueryLanguage" in c]
    (tmp_path / "queries.yml").write_text(yaml.safe_dump({"groups": [{"name": "policies", "rules": queries}]}))
    checked = _promtool(tmp_path, "check", "rules", "queries.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _alert_expr(name: str) -> str:
    return next(rule["expr"] for rule in all_rules() if rule.get("alert") == name)


@pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")
def test_the_alerts_fire_on_the_first_increment_and_stay_quiet_when_healthy(tmp_path):
    """A first increment fires; new series after a deploy, no data and steady traffic fire nothing."""
    tests = [
        {   # first dead letter at minute 20 of a process: increase() alone would miss it
            "interval": "1m",
            "input_series": [
                {"series": 'tokenbank_dead_letters_total{store="firestore",instance="w1"}', "values": "_x20 1x40"},
                {"series": 'tokenbank_enqueue_failures_total{instance="web1"}', "values": "0x10 1 2 2x30"},
            ],
            "promql_expr_test": [
                {"expr": _alert_expr("TokenbankEventDeadLettered"), "eval_time": "25m",
                 "exp_samples": [{"labels": '{store="firestore"}', "value": 1}]},
                {"expr": _alert_expr("TokenbankEventDeadLettered"), "eval_time": "50m", "exp_samples": []},
                {"expr": _alert_expr("TokenbankWebhookEnqueueFailing"), "eval_time": "13m",
                 "exp_samples": [{"labels": "{}", "value": 2}]},
            ],
        },
        {   # completions keep arriving, no credit and no event task: stalled, workers not processing
            "interval": "1m",
            "input_series": [
                {"series": 'tokenbank_webhooks_received_total{type="checkout.session.completed",'
                           'outcome="enqueued",instance="web1"}', "values": "0+1x60"},
            ],
            "promql_expr_test": [
                {"expr": _alert_expr("TokenbankCreditsStalled"), "eval_time": "40m",
                 "exp_samples": [{"labels": "{}", "value": 30}]},
                {"expr": _alert_expr("TokenbankWorkerNotProcessing"), "eval_time": "40m",
                 "exp_samples": [{"labels": "{}", "value": 15}]},
            ],
        },
        {   # just after a deploy: each instance's first credit creates its series at 1 (no increase yet)
            "interval": "1m",
            "input_series": [
                {"series": 'tokenbank_webhooks_received_total{type="checkout.session.completed",'
                           'outcome="enqueued",instance="web1"}', "values": "0x5 1x10 2x10 3x10 4x30"},
                {"series": 'tokenbank_credits_total{source="webhook",instance="w1"}', "values": "_x5 1x60"},
                {"series": 'tokenbank_credits_total{source="webhook",instance="w2"}', "values": "_x15 1x50"},
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.stripe.process_event",'
                           'result="done",instance="w1"}', "values": "_x5 1x10 2x10 3x10 4x30"},
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.jobs.reconcile",'
                           'result="done",instance="w2"}', "values": "_x10 1x60"},
            ],
            "promql_expr_test": [
                {"expr": _alert_expr(name), "eval_time": "30m", "exp_samples": []}
                for name in ("TokenbankCreditsStalled", "TokenbankWorkerNotProcessing",
                             "TokenbankReconciliationNotRunning")
            ],
        },
        {   # beat stopped at minute 20: workers keep running webhook tasks, reconciliation never again
            "interval": "1m",
            "input_series": [
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.stripe.process_event",'
                           'result="done",instance="w1"}', "values": "0+1x150"},
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.jobs.reconcile",'
                           'result="done",instance="w1"}', "values": "1x5 2x15 3x130"},
            ],
            "promql_expr_test": [
                {"expr": _alert_expr("TokenbankReconciliationNotRunning"), "eval_time": "60m", "exp_samples": []},
                {"expr": _alert_expr("TokenbankReconciliationNotRunning"), "eval_time": "90m",
                 "exp_samples": [{"labels": "{}", "value": 0}]},
            ],
        },
        {   # no metrics collected at all: the "nothing happened" alerts stay quiet
            "interval": "1m",
            "input_series": [{"series": 'tokenbank_velocity_alerts_total{instance="w1"}', "values": "0x60"}],
            "promql_expr_test": [
                {"expr": _alert_expr(name), "eval_time": "60m", "exp_samples": []}
                for name in ("TokenbankCreditsStalled", "TokenbankWorkerNotProcessing",
                             "TokenbankReconciliationNotRunning", "TokenbankWebhookSecretMismatch")
            ],
        },
        {   # healthy: every completion credited, the event task runs, reconciliation every 15 min
            "interval": "1m",
            "input_series": [
                {"series": 'tokenbank_webhooks_received_total{type="checkout.session.completed",'
                           'outcome="enqueued",instance="web1"}', "values": "0+1x120"},
                {"series": 'tokenbank_credits_total{source="webhook",instance="w1"}', "values": "0+1x120"},
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.stripe.process_event",'
                           'result="done",instance="w1"}', "values": "0+1x120"},
                {"series": 'tokenbank_task_duration_seconds_count{task="tokenbank.jobs.reconcile",'
                           'result="done",instance="w1"}', "values": "0x14 1x15 2x15 3x15 4x15 5x15 6x15 7x15"},
            ],
            "promql_expr_test": [
                {"expr": _alert_expr(name), "eval_time": "100m", "exp_samples": []}
                for name in ("TokenbankCreditsStalled", "TokenbankWorkerNotProcessing",
                             "TokenbankReconciliationNotRunning", "TokenbankPurchaseRejected",
                             "TokenbankEventDeadLettered", "TokenbankTaskFailed")
            ],
        },
    ]
    (tmp_path / "t.yml").write_text(yaml.safe_dump({"rule_files": [str(RULES)], "evaluation_interval": "1m",
                                                    "tests": tests}))
    result = _promtool(tmp_path, "test", "rules", "t.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def _cloud_sdk() -> tuple[Path, Path] | None:
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return None
    root = Path(gcloud).resolve().parent.parent
    python = root / "platform" / "bundledpythonunix" / "bin" / "python3"
    lib = root / "lib"
    if not (lib / "googlecloudsdk" / "command_lib" / "monitoring" / "util.py").exists() or not python.exists():
        return None
    return python, lib


SDK_CHECK = r"""
import sys
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/third_party"]
from apitools.base.protorpclite import messages
from googlecloudsdk.command_lib.monitoring import util
from googlecloudsdk.generated_clients.apis.monitoring.v3 import monitoring_v3_messages as m

def unknown(msg, path):
    found = [f"{path}: {sorted(msg.all_unrecognized_fields())}"] if msg.all_unrecognized_fields() else []
    for field in msg.all_fields():
        value = msg.get_assigned_value(field.name)
        for item in (value if field.repeated else [value]) if value is not None else []:
            if isinstance(item, messages.Message):
                found += unknown(item, f"{path}.{field.name}")
    return found

bad = []
for name in sys.argv[2:]:
    policy = util.MessageFromString(open(name).read(), m.AlertPolicy, "AlertPolicy")
    bad += [f"{name}: {p}" for p in unknown(policy, "policy")]
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""


@pytest.mark.skipif(_cloud_sdk() is None, reason="the Google Cloud SDK is not installed")
def test_gcloud_reads_every_policy_file_as_an_alert_policy():
    """The same parsing `gcloud alpha monitoring policies create --policy-from-file` does, offline."""
    python, lib = _cloud_sdk()
    result = subprocess.run([str(python), "-c", SDK_CHECK, str(lib), *map(str, POLICIES)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr

