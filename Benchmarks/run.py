#!/usr/bin/env python3
"""Amtsbote against its peers, in one run on one machine: wall time, throughput, peak RSS, ratios.

Called by scripts/bench (which builds and installs the peers). Workloads come from generate.py (fixed seeds).
Every tool runs alternately with the others, `--runs` times; the median is reported. Peak RSS comes from wait4().
"""
import argparse, json, os, platform, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
SCHEMAS = os.path.join(ROOT, "Schemas")
CATALOG = os.path.join(SCHEMAS, "catalog.xml")
GEWERBE_XSD = os.path.join(SCHEMAS, "gewerbe/gewerbeanzeige.xsd")
HUNDE_XSD = os.path.join(SCHEMAS, "hundesteuer/hundesteueranmeldung.xsd")
ANTRAG_XSD = os.path.join(ROOT, "Benchmarks/antrag/antrag.xsd")
SECTIONS = ["large", "small", "startup", "flat", "stream", "antrag"]
ENV = dict(os.environ, XML_CATALOG_FILES=CATALOG)

PEAK_RSS = None   # the peak-rss helper (Benchmarks/peak-rss), set by main

def run(argv, stdin=None):
    """Runs argv from the project folder; returns (seconds, peak RSS in MiB, exit status). The child is started by
    the small peak-rss helper: a child forked from Python would carry Python's pages in its peak until exec."""
    report = os.path.join(tempfile.gettempdir(), f"amtsbote-bench-rss-{os.getpid()}")
    start = time.perf_counter()
    subprocess.run([PEAK_RSS, report] + argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    elapsed = time.perf_counter() - start
    kib, status = open(report).read().split()
    os.unlink(report)
    return elapsed, int(kib) / 1024, int(status)

def lxml_script(xsd, files_arg):
    return [sys.executable, "-c", f"""
import sys
from lxml import etree
schema = etree.XMLSchema(etree.parse({xsd!r}))
files = sys.argv[1:]
if len(files) == 1 and files[0].startswith('@'):
    files = [l.strip() for l in open(files[0][1:])]
bad = 0
for f in files:
    if not schema.validate(etree.parse(f)): bad += 1
sys.exit(1 if bad else 0)
""", files_arg]

XSI = "http://www.w3.org/2001/XMLSchema-instance"

def xerces_workloads(work, large, small_files):
    """Xerces-C reads no catalogs and takes the schema only from xsi:schemaLocation: give it a copy of the schema
    set whose absolute imports point at the local files, and copies of the workloads carrying the hint."""
    import re
    schemas = os.path.join(work, "xerces-schemas")
    if not os.path.exists(schemas):
        shutil.copytree(SCHEMAS, schemas)
        catalog = open(CATALOG).read()
        mapping = dict(re.findall(r'<system systemId="([^"]+)" uri="([^"]+)"', catalog))
        for folder, _, names in os.walk(schemas):
            for name in names:
                if not name.endswith(".xsd"): continue
                path = os.path.join(folder, name)
                text = open(path, encoding="utf-8").read()
                for remote, local in mapping.items():
                    text = text.replace(remote, "file://" + os.path.join(schemas, local))
                open(path, "w", encoding="utf-8").write(text)
    hint = (f' xmlns:xsi="{XSI}" xsi:schemaLocation="urn:xoev-de:amtsbote:gewerbe:1 '
            f'file://{os.path.join(schemas, "gewerbe/gewerbeanzeige.xsd")}"').encode()

    def with_hint(source, target):
        if os.path.exists(target): return
        with open(source, "rb") as src, open(target + ".tmp", "wb") as dst:
            head = src.read(65536)
            root = head.index(b"<gew:gewerbe.anmeldung.0201") + len(b"<gew:gewerbe.anmeldung.0201")
            dst.write(head[:root] + hint + head[root:])
            shutil.copyfileobj(src, dst, 1 << 20)
        os.rename(target + ".tmp", target)

    big = os.path.join(work, "xerces-large.xml")
    with_hint(large, big)
    folder = os.path.join(work, "xerces-small")
    os.makedirs(folder, exist_ok=True)
    files = []
    for f in small_files:
        target = os.path.join(folder, os.path.basename(f))
        with_hint(f, target)
        files.append(target)
    listing = os.path.join(work, "xerces-small.list")
    with open(listing, "w") as f: f.write("\n".join(files) + "\n")
    # Proof that Xerces really validates: a copy with one element renamed must fail.
    broken = os.path.join(work, "xerces-broken.xml")
    text = open(files[0], encoding="utf-8").read().replace("<gew:betrieb>", "<gew:betriebX>", 1).replace("</gew:betrieb>", "</gew:betriebX>", 1)
    open(broken, "w", encoding="utf-8").write(text)
    validates = (run(XERCES + [files[0]])[2] == 0 and subprocess.run(XERCES + [broken], capture_output=True, text=True)
                 .stderr.count("Error") > 0)
    return big, listing, validates

XERCES = ["SAX2Count", "-v=always", "-f"]

def measure(tools, runs):
    results = {name: [] for name, _ in tools}
    for _ in range(runs):
        for name, argv in tools:
            seconds, rss, status = run(argv() if callable(argv) else argv)
            if status != 0:
                print(f"  warning: {name} exited with {status}", file=sys.stderr)
            results[name].append((seconds, rss, status))
    return {name: (statistics.median(s for s, _, _ in r), max(m for _, m, _ in r), r[-1][2]) for name, r in results.items()}

def table(title, results, unit, amount, reference):
    ref = results[reference][0]
    lines = [f"\n### {title}\n", f"| tool | wall (median) | {unit} | peak RSS | time ratio to {reference} |", "|---|---|---|---|---|"]
    for name, (seconds, rss, status) in results.items():
        rate = amount / seconds
        mark = "" if status == 0 else f" (exit {status})"
        lines.append(f"| {name}{mark} | {seconds:.3f} s | {rate:,.1f} | {rss:.1f} MiB | {seconds / ref:.2f}× |")
    text = "\n".join(lines)
    print(text, flush=True)
    return text

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amtsbote", required=True)
    ap.add_argument("--saxplug")
    ap.add_argument("--peak-rss", required=True, help="the compiled Benchmarks/peak-rss/peak-rss.c")
    ap.add_argument("--work", default=tempfile.mkdtemp(prefix="amtsbote-bench-"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--large-mb", type=int, default=200)
    ap.add_argument("--small-count", type=int, default=10000)
    ap.add_argument("--flat-count", type=int, default=50000)
    ap.add_argument("--stream-mb", type=int, default=2048)
    ap.add_argument("--report", help="append the Markdown tables to this file")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="which tables, comma-separated: " + ",".join(SECTIONS))
    a = ap.parse_args()
    sections = set(a.sections.split(","))
    if not sections <= set(SECTIONS): ap.error(f"unknown section in {a.sections}")
    global PEAK_RSS
    PEAK_RSS = a.peak_rss
    gen = [sys.executable, os.path.join(ROOT, "Benchmarks/generate.py")]
    os.makedirs(a.work, exist_ok=True)
    os.chdir(ROOT)
    large = os.path.join(a.work, "large.xml")
    unique = os.path.join(a.work, "unique.xml")
    small = os.path.join(a.work, "small")
    if "large" in sections and not os.path.exists(large): subprocess.check_call(gen + ["large", large, "--mb", str(a.large_mb)])
    if "stream" in sections and not os.path.exists(unique): subprocess.check_call(gen + ["unique", unique, "--mb", str(a.large_mb)])
    if not os.path.exists(small): subprocess.check_call(gen + ["small", small, "--count", str(a.small_count)])
    small_files = sorted(os.path.join(small, f) for f in os.listdir(small))
    listing = os.path.join(a.work, "small.list")
    with open(listing, "w") as f: f.write("\n".join(small_files) + "\n")
    # Like for like: the peers check XSD only, so the code-list pass is off here.
    amts = [a.amtsbote, "validate", "--quiet", "--schemas", SCHEMAS, "--max-size", "0", "--timeout", "0", "--no-code-lists"]
    have = lambda tool: shutil.which(tool) is not None
    try:
        import lxml  # noqa: F401
        has_lxml = True
    except ImportError:
        has_lxml = False
    out = []
    cpu = platform.processor() or platform.machine()
    header = (f"Machine: {os.cpu_count()} cores, {cpu}, {platform.platform()}; libxml2 from the system; "
              f"{a.runs} alternating runs, median wall time, max peak RSS.")
    print(header)
    out.append(header)

    xerces = None
    if "large" in sections:
        # 1. One large document.
        mb = os.path.getsize(large) / 2**20
        tools = [("amtsbote", amts + ["--jobs", "1", large])]
        if a.saxplug: tools.append(("C push+SAX plug (reference)", [a.saxplug, GEWERBE_XSD, large]))
        if have("SAX2Count"):
            xerces = xerces_workloads(a.work, large, small_files)
            if not xerces[2]:
                print("SAX2Count did not report an error for an invalid copy: its rows are left out")
                xerces = None
        if xerces: tools.append(("Xerces-C SAX2Count -v=always -f", XERCES + [xerces[0]]))
        if have("xmllint"):
            tools.append(("xmllint --stream --schema", ["xmllint", "--nonet", "--stream", "--noout", "--schema", GEWERBE_XSD, large]))
            tools.append(("xmllint --schema (tree)", ["xmllint", "--nonet", "--noout", "--schema", GEWERBE_XSD, large]))
        if has_lxml: tools.append(("lxml (tree)", lxml_script(GEWERBE_XSD, large)))
        out.append(table(f"One large document: {mb:.0f} MiB Gewerbeanmeldung", measure(tools, a.runs), "MiB/s", mb, "amtsbote"))

    if "small" in sections:
        # 2. Many small documents.
        n = len(small_files)
        tools = [("amtsbote --jobs 2", amts + ["--jobs", "2", small]), ("amtsbote --jobs 1", amts + ["--jobs", "1", small])]
        if a.saxplug: tools.append(("C push+SAX plug, 1 thread (reference)", [a.saxplug, GEWERBE_XSD] + small_files))
        if have("xmllint"):
            tools.append(("xmllint --schema (tree), one process", ["xmllint", "--nonet", "--noout", "--schema", GEWERBE_XSD] + small_files))
            tools.append(("xmllint --stream --schema, one process", ["xmllint", "--nonet", "--stream", "--noout", "--schema", GEWERBE_XSD] + small_files))
            tools.append(("xargs -P2 xmllint --stream --schema", ["sh", "-c",
                f"xargs -P2 -n 500 xmllint --nonet --stream --noout --schema {GEWERBE_XSD} < {listing}"]))
        if has_lxml: tools.append(("lxml, one process", lxml_script(GEWERBE_XSD, "@" + listing)))
        if xerces: tools.append(("Xerces-C SAX2Count -l, one process", XERCES + ["-l", xerces[1]]))
        avg_kb = sum(os.path.getsize(f) for f in small_files) / n / 1024
        out.append(table(f"{n:,} small documents ({avg_kb:.1f} KiB average)", measure(tools, a.runs), "files/s", n, "amtsbote --jobs 2"))

    if "startup" in sections:
        # 3. Start-up: one small file from process start.
        one = small_files[0]
        tools = [("amtsbote", amts + ["--jobs", "1", one])]
        if have("xmllint"): tools.append(("xmllint --schema", ["xmllint", "--nonet", "--noout", "--schema", GEWERBE_XSD, one]))
        if a.saxplug: tools.append(("C push+SAX plug", [a.saxplug, GEWERBE_XSD, one]))
        out.append(table("One small file from process start (30 runs)", measure(tools, 30), "files/s", 1, "amtsbote"))

    if "flat" in sections:
        # 4. Flat memory: 10k vs more files in one run.
        if a.flat_count > n:
            many = os.path.join(a.work, "many")
            if not os.path.exists(many): subprocess.check_call(gen + ["small", many, "--count", str(a.flat_count)])
            r_small = run(amts + ["--jobs", "2", small])
            r_many = run(amts + ["--jobs", "2", many])
            text = (f"\n### Memory over many files\n\n| files | wall | peak RSS |\n|---|---|---|\n"
                    f"| {n:,} | {r_small[0]:.2f} s | {r_small[1]:.1f} MiB |\n| {a.flat_count:,} | {r_many[0]:.2f} s | {r_many[1]:.1f} MiB |\n"
                    f"\nDifference: {r_many[1] - r_small[1]:+.1f} MiB.")
            print(text)
            out.append(text)

    if "stream" in sections:
        # 5. A 2 GB document streamed through standard input, never stored; and xs:unique.
        producer = subprocess.Popen(gen + ["stream", "-", "--mb", str(a.stream_mb)], stdout=subprocess.PIPE)
        r_stream = run(amts + ["--jobs", "1", "-"], stdin=producer.stdout)
        producer.stdout.close()
        producer.wait()
        r_unique = run(amts + ["--jobs", "1", unique])
        umb = os.path.getsize(unique) / 2**20
        text = (f"\n### Memory on large documents\n\n| document | wall | peak RSS | exit |\n|---|---|---|---|\n"
                f"| {a.stream_mb:,} MiB Gewerbeanmeldung through a pipe (generator included in wall time) | {r_stream[0]:.1f} s | {r_stream[1]:.1f} MiB | {r_stream[2]} |\n"
                f"| {umb:.0f} MiB Hundesteuer-Anmeldung, xs:unique over every chipnummer | {r_unique[0]:.1f} s | {r_unique[1]:.1f} MiB | {r_unique[2]} |")
        print(text)
        out.append(text)

    # 6. The varied workload: another schema (long enumerations, patterns, local xs:unique), five document shapes.
    if "antrag" in sections:
        antrag = os.path.join(a.work, "antrag")
        antrag_large = os.path.join(a.work, "antrag-large.xml")
        if not os.path.exists(antrag): subprocess.check_call(gen + ["antrag", antrag, "--count", str(a.small_count)])
        if not os.path.exists(antrag_large): subprocess.check_call(gen + ["antrag-large", antrag_large, "--mb", str(a.large_mb)])
        antrag_files = sorted(os.path.join(antrag, f) for f in os.listdir(antrag))
        amts_antrag = [a.amtsbote, "validate", "--quiet", "--xsd", ANTRAG_XSD, "--max-size", "0", "--timeout", "0", "--no-code-lists"]
        n = len(antrag_files)
        tools = [("amtsbote --jobs 2", amts_antrag + ["--jobs", "2", antrag]), ("amtsbote --jobs 1", amts_antrag + ["--jobs", "1", antrag])]
        if a.saxplug: tools.append(("C push+SAX plug, 1 thread (reference)", [a.saxplug, ANTRAG_XSD] + antrag_files))
        if have("xmllint"):
            tools.append(("xmllint --schema (tree), one process", ["xmllint", "--nonet", "--noout", "--schema", ANTRAG_XSD] + antrag_files))
        if has_lxml:
            antrag_listing = os.path.join(a.work, "antrag.list")
            with open(antrag_listing, "w") as f: f.write("\n".join(antrag_files) + "\n")
            tools.append(("lxml, one process", lxml_script(ANTRAG_XSD, "@" + antrag_listing)))
        avg_kb = sum(os.path.getsize(f) for f in antrag_files) / n / 1024
        out.append(table(f"{n:,} varied Sammelanträge ({avg_kb:.1f} KiB average; small, medium, large, deep, flat)",
                         measure(tools, a.runs), "files/s", n, "amtsbote --jobs 1"))
        mb = os.path.getsize(antrag_large) / 2**20
        tools = [("amtsbote", amts_antrag + ["--jobs", "1", antrag_large])]
        if a.saxplug: tools.append(("C push+SAX plug (reference)", [a.saxplug, ANTRAG_XSD, antrag_large]))
        if have("xmllint"):
            tools.append(("xmllint --stream --schema", ["xmllint", "--nonet", "--stream", "--noout", "--schema", ANTRAG_XSD, antrag_large]))
        out.append(table(f"One large document: {mb:.0f} MiB Sammelantrag (local xs:unique in every Antrag)",
                         measure(tools, a.runs), "MiB/s", mb, "amtsbote"))
    if a.report:
        with open(a.report, "a") as f: f.write("\n".join(out) + "\n")

main()
