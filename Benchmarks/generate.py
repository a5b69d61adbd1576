#!/usr/bin/env python3
"""Deterministic benchmark workloads for Amtsbote (valid against Schemas/).

    generate.py large  OUT.xml  [--mb 200]   one Gewerbeanmeldung with many gesetzlicherVertreter (no xs:unique)
    generate.py unique OUT.xml  [--mb 200]   one Hundesteuer-Anmeldung with many hund (xs:unique on chipnummer)
    generate.py small  DIR      [--count 10000]  files of 5-20 KB (Gewerbeanmeldung with 10-45 Vertreter)
    generate.py stream -        [--mb 2048]  the large document written to standard output, never stored
    generate.py wohnsitz DIR    [--count 2000]  Wohnsitz-Anmeldungen for Köln of about 14 KB (10 persons each),
                                             the input of the sample transformation (scripts/bench-transform)
    generate.py antrag DIR      [--count 10000]  Sammelanträge for Benchmarks/antrag/antrag.xsd in five shapes
                                             (small 2 KB, medium 14 KB, large 60 KB, deep: sections nested 60
                                             levels, flat: 300 short positions), long enumerations, patterns and
                                             local xs:unique
    generate.py antrag-large OUT.xml [--mb 200]  one Sammelantrag of many Anträge (each with its local xs:unique)

Same arguments, same bytes: the generator uses a fixed seed.
"""
import argparse, os, random, sys

BAS = 'xmlns:bas="urn:xoev-de:amtsbote:basis:1"'

def kopf(prefix, uuid, leistung, ags):
    return f"""  <{prefix}:nachrichtenkopf.g2g>
    <bas:identifikation.nachricht>
      <bas:nachrichtenUUID>{uuid}</bas:nachrichtenUUID>
      <bas:nachrichtentyp listURI="urn:xoev-de:amtsbote:codeliste:nachrichtentyp" listVersionID="1.0"><bas:code>0201</bas:code></bas:nachrichtentyp>
      <bas:erstellungszeitpunkt>2026-11-02T09:14:27+01:00</bas:erstellungszeitpunkt>
    </bas:identifikation.nachricht>
    <bas:leser><bas:behoerdenkennung><bas:praefix listURI="urn:dvdv" listVersionID="1"><bas:code>gew</bas:code></bas:praefix><bas:kennung>{ags}</bas:kennung></bas:behoerdenkennung></bas:leser>
    <bas:autor><bas:behoerdenkennung><bas:praefix listURI="urn:dvdv" listVersionID="1"><bas:code>ozg</bas:code></bas:praefix><bas:kennung>0000000101</bas:kennung></bas:behoerdenkennung></bas:autor>
    <bas:leistungsschluessel>{leistung}</bas:leistungsschluessel>
  </{prefix}:nachrichtenkopf.g2g>
"""

def anschrift(tag, rnd):
    return (f"<{tag}><bas:strasse>Musterstraße</bas:strasse><bas:hausnummer>{rnd.randint(1, 999)}</bas:hausnummer>"
            f"<bas:postleitzahl>80802</bas:postleitzahl><bas:ort>München</bas:ort>"
            f"<bas:gemeindeschluessel>09162000</bas:gemeindeschluessel></{tag}>")

NAMES = ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann"]
VORNAMEN = ["Anna", "Jonas", "Mia", "Leon", "Emilia", "Paul", "Hannah", "Elias", "Sophie", "Noah"]

def person(rnd):
    return (f"<bas:familienname>{rnd.choice(NAMES)}</bas:familienname><bas:vorname>{rnd.choice(VORNAMEN)}</bas:vorname>"
            f"<bas:geburtsdatum>19{rnd.randint(40, 99)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}</bas:geburtsdatum>"
            f"<bas:geburtsort>Augsburg</bas:geburtsort>"
            f'<bas:staatsangehoerigkeit listURI="urn:de:dsmeld:schluesseltabelle:staat" listVersionID="2024-08-01">'
            f"<bas:code>000</bas:code></bas:staatsangehoerigkeit>")

def gewerbe_head(uuid):
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<gew:gewerbe.anmeldung.0201 xmlns:gew="urn:xoev-de:amtsbote:gewerbe:1" '
            f'{BAS} standard="Amtsbote-Gewerbe" version="1.1">\n' + kopf("gew", uuid, "99050012104000", "09162000") +
            "  <gew:anlass>Neugruendung</gew:anlass>\n  <gew:betrieb><gew:bezeichnung>Benchmark GmbH</gew:bezeichnung>"
            '<gew:rechtsform listURI="urn:rechtsform" listVersionID="1"><bas:code>340</bas:code></gew:rechtsform>'
            + anschrift("gew:betriebsstaette", random.Random(1)) +
            "<gew:beginn>2026-12-01</gew:beginn><gew:taetigkeit><gew:beschreibung>Software</gew:beschreibung>"
            "<gew:wirtschaftszweig>62.01.9</gew:wirtschaftszweig><gew:imNebenerwerb>false</gew:imNebenerwerb></gew:taetigkeit>"
            "<gew:beschaeftigteVollzeit>4</gew:beschaeftigteVollzeit><gew:beschaeftigteTeilzeit>1</gew:beschaeftigteTeilzeit>"
            "</gew:betrieb>\n  <gew:inhaber><gew:juristischePerson><gew:name>Benchmark GmbH</gew:name>"
            + anschrift("gew:sitz", random.Random(2)) + "</gew:juristischePerson></gew:inhaber>\n")

GEWERBE_TAIL = "</gew:gewerbe.anmeldung.0201>\n"

def vertreter(rnd):
    return f"  <gew:gesetzlicherVertreter>{person(rnd)}</gew:gesetzlicherVertreter>\n"

def write_large(out, megabytes):
    rnd = random.Random(4711)
    target = megabytes * 1024 * 1024
    out.write(gewerbe_head("b0000000-0000-4000-8000-000000000001").encode())
    written = 0
    block = []
    while written < target:
        text = "".join(vertreter(rnd) for _ in range(256)).encode()
        out.write(text)
        written += len(text)
    out.write(GEWERBE_TAIL.encode())

def write_unique(out, megabytes):
    rnd = random.Random(815)
    target = megabytes * 1024 * 1024
    head = (f'<?xml version="1.0" encoding="UTF-8"?>\n<hst:hundesteuer.anmeldung.0301 xmlns:hst="urn:xoev-de:amtsbote:hundesteuer:1" '
            f'{BAS} standard="Amtsbote-Hundesteuer" version="1.0">\n' + kopf("hst", "b0000000-0000-4000-8000-000000000002", "99061001012000", "05915000")
            + f"  <hst:halter>{person(rnd)}</hst:halter>\n  " + anschrift("hst:wohnanschrift", rnd) + "\n")
    out.write(head.encode())
    written, n = 0, 0
    while written < target:
        parts = []
        for _ in range(256):
            n += 1
            parts.append(f"  <hst:hund><hst:rufname>Hund {n}</hst:rufname><hst:rasse>Mischling</hst:rasse>"
                         f"<hst:haltungSeit>2026-10-01</hst:haltungSeit><hst:chipnummer>{276000000000000 + n:015d}</hst:chipnummer>"
                         f"<hst:gefaehrlicherHund>false</hst:gefaehrlicherHund></hst:hund>\n")
        text = "".join(parts).encode()
        out.write(text)
        written += len(text)
    out.write(b"</hst:hundesteuer.anmeldung.0301>\n")

def write_small(directory, count):
    os.makedirs(directory, exist_ok=True)
    rnd = random.Random(42)
    for i in range(count):
        k = rnd.randint(10, 45)
        text = gewerbe_head(f"c0000000-0000-4000-8000-{i:012d}") + "".join(vertreter(rnd) for _ in range(k)) + GEWERBE_TAIL
        with open(os.path.join(directory, f"gewerbe-{i:05d}.xml"), "w", encoding="utf-8") as f:
            f.write(text)

def wohnsitz_person(number, rnd):
    code = lambda uri, version, value: f'listURI="{uri}" listVersionID="{version}"><bas:code>{value}</bas:code>'
    return (f"  <wa:person>\n    <wa:laufendeNummer>{number}</wa:laufendeNummer>\n    <wa:natuerlichePerson>\n"
            f"      <bas:familienname>{rnd.choice(NAMES)}</bas:familienname>\n      <bas:vorname>{rnd.choice(VORNAMEN)}</bas:vorname>\n"
            f"      <bas:vorname>{rnd.choice(VORNAMEN)}</bas:vorname>\n"
            f"      <bas:geburtsdatum>19{rnd.randint(40, 99)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}</bas:geburtsdatum>\n"
            f"      <bas:geburtsort>Bonn</bas:geburtsort>\n"
            f"      <bas:staatsangehoerigkeit {code('urn:de:dsmeld:schluesseltabelle:staat', '2024-08-01', '000')}</bas:staatsangehoerigkeit>\n"
            f"      <bas:staatsangehoerigkeit {code('urn:de:dsmeld:schluesseltabelle:staat', '2024-08-01', rnd.choice(['121', '129', '163']))}</bas:staatsangehoerigkeit>\n"
            f"    </wa:natuerlichePerson>\n"
            f"    <wa:geschlecht {code('urn:de:dsmeld:schluesseltabelle:geschlecht', '2023-11-01', rnd.choice('mwdx'))}</wa:geschlecht>\n"
            f"    <wa:familienstand {code('urn:de:dsmeld:schluesseltabelle:familienstand', '2023-11-01', rnd.choice(['LD', 'VH', 'VW']))}</wa:familienstand>\n"
            f"    <wa:religionszugehoerigkeit {code('urn:de:dsmeld:schluesseltabelle:religion', '2023-11-01', rnd.choice(['ev', 'rk', 'lt']))}</wa:religionszugehoerigkeit>\n"
            f"  </wa:person>\n")

def write_wohnsitz(directory, count):
    os.makedirs(directory, exist_ok=True)
    rnd = random.Random(7)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Samples", "valid", "wohnsitz-anmeldung-koeln.xml"),
              encoding="utf-8") as f:
        sample = f.read()
    head, rest = sample.split("  <wa:person>", 1)
    head += ("  <wa:bisherigeWohnung>\n    <bas:strasse>Alte Gasse</bas:strasse>\n    <bas:hausnummer>7</bas:hausnummer>\n"
             "    <bas:postleitzahl>53111</bas:postleitzahl>\n    <bas:ort>Bonn</bas:ort>\n"
             "    <bas:gemeindeschluessel>05314000</bas:gemeindeschluessel>\n  </wa:bisherigeWohnung>\n")
    tail = "  <wa:wohnungsgeberbestaetigungLiegtVor>" + rest.split("<wa:wohnungsgeberbestaetigungLiegtVor>", 1)[1]
    uuid = "3f2b9c1e-8d4a-4e6b-9a7c-1d2e3f4a5b6c"
    assert uuid in head
    for i in range(count):
        text = (head.replace(uuid, f"d0000000-0000-4000-8000-{i:012d}")
                + "".join(wohnsitz_person(n, rnd) for n in range(1, 11)) + tail)
        with open(os.path.join(directory, f"wohnsitz-{i:05d}.xml"), "w", encoding="utf-8") as f:
            f.write(text)

ANTRAG_NS = "urn:example:amtsbote:benchmark:antrag:1"

def antrag_person(number, rnd):
    kontakt = ""
    if rnd.random() < 0.7:
        kontakt = f"<a:telefon>+49 {rnd.randint(30, 999)} {rnd.randint(100000, 9999999)}</a:telefon><a:email>{rnd.choice(VORNAMEN).lower()}.{number}@example.de</a:email>"
    return (f"<a:antragsteller><a:personId>P{number:06d}</a:personId><a:familienname>{rnd.choice(NAMES)}</a:familienname>"
            f"<a:vorname>{rnd.choice(VORNAMEN)}</a:vorname><a:geburtsdatum>19{rnd.randint(40, 99)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}</a:geburtsdatum>"
            f"<a:staat>{rnd.randint(0, 199):03d}</a:staat><a:anschrift><a:strasse>Hauptstraße</a:strasse>"
            f"<a:hausnummer>{rnd.randint(1, 300)}{rnd.choice(['', 'a', 'b'])}</a:hausnummer><a:plz>{rnd.randint(10000, 99999)}</a:plz>"
            f"<a:ort>Musterstadt</a:ort><a:ags>{rnd.randint(1000000, 16999999):08d}</a:ags></a:anschrift>{kontakt}</a:antragsteller>\n")

def antrag_leistung(rnd):
    return f"99{(rnd.randint(0, 119) * 7919) % 10**12:012d}"

def antrag_position(number, rnd):
    iban = f"<a:iban>DE{rnd.randint(10**19, 10**20 - 1)}</a:iban>" if rnd.random() < 0.3 else ""
    return (f'<a:position art="{rnd.choice(["gebuehr", "auslage", "erstattung"])}"><a:nummer>{number}</a:nummer>'
            f"<a:leistung>{antrag_leistung(rnd)}</a:leistung><a:betrag>{rnd.randint(0, 99999)}.{rnd.randint(0, 99):02d}</a:betrag>{iban}</a:position>\n")

def antrag_abschnitt(depth, rnd):
    inner = antrag_abschnitt(depth - 1, rnd) if depth > 1 else ""
    return f"<a:abschnitt><a:titel>Abschnitt {depth}</a:titel><a:text>Angaben zum Vorhaben, Teil {depth}.</a:text>{inner}</a:abschnitt>"

def antrag(i, shape, rnd):
    persons, positions, depth, sections = {"small": (1, 3, 1, 1), "medium": (6, 50, 3, 4), "large": (20, 200, 3, 10),
                                           "deep": (2, 5, 60, 2), "flat": (1, 300, 1, 0)}[shape]
    text = (f"<a:antrag><a:id>{i:08x}-0000-4000-8000-{rnd.randint(0, 16**12 - 1):012x}</a:id>"
            f"<a:eingang>2026-11-{rnd.randint(10, 28)}T09:{rnd.randint(10, 59)}:00+01:00</a:eingang>"
            f"<a:leistung>{antrag_leistung(rnd)}</a:leistung><a:zustaendig>{rnd.randint(1000000, 16999999):08d}</a:zustaendig>\n")
    text += "".join(antrag_person(n, rnd) for n in range(1, persons + 1))
    text += "<a:positionen>\n" + "".join(antrag_position(n, rnd) for n in range(1, positions + 1)) + "</a:positionen>\n"
    text += "".join(antrag_abschnitt(depth, rnd) + "\n" for _ in range(sections))
    text += '<a:anlage><a:name>Nachweis.pdf</a:name><a:mime>application/pdf</a:mime><a:groesse>48211</a:groesse></a:anlage>\n'
    return text + "</a:antrag>\n"

ANTRAG_HEAD = f'<?xml version="1.0" encoding="UTF-8"?>\n<a:sammelantrag xmlns:a="{ANTRAG_NS}">\n'
ANTRAG_TAIL = "</a:sammelantrag>\n"
ANTRAG_SHAPES = ["small", "small", "medium", "medium", "medium", "large", "deep", "flat"]

def write_antrag(directory, count):
    os.makedirs(directory, exist_ok=True)
    rnd = random.Random(11)
    for i in range(count):
        shape = ANTRAG_SHAPES[i % len(ANTRAG_SHAPES)]
        with open(os.path.join(directory, f"antrag-{i:05d}-{shape}.xml"), "w", encoding="utf-8") as f:
            f.write(ANTRAG_HEAD + antrag(i, shape, rnd) + ANTRAG_TAIL)

def write_antrag_large(out, megabytes):
    rnd = random.Random(12)
    out.write(ANTRAG_HEAD.encode())
    written, i = 0, 0
    while written < megabytes * 2**20:
        chunk = antrag(i, ANTRAG_SHAPES[i % len(ANTRAG_SHAPES)], rnd).encode()
        out.write(chunk)
        written += len(chunk)
        i += 1
    out.write(ANTRAG_TAIL.encode())

ap = argparse.ArgumentParser()
ap.add_argument("kind", choices=["large", "unique", "small", "stream", "wohnsitz", "antrag", "antrag-large"])
ap.add_argument("out")
ap.add_argument("--mb", type=int, default=200)
ap.add_argument("--count", type=int, default=10000)
a = ap.parse_args()
if a.kind == "small":
    write_small(a.out, a.count)
elif a.kind == "antrag":
    write_antrag(a.out, a.count)
elif a.kind == "antrag-large":
    with open(a.out, "wb") as f:
        write_antrag_large(f, a.mb)
elif a.kind == "wohnsitz":
    write_wohnsitz(a.out, a.count if a.count != 10000 else 2000)
elif a.kind == "stream":
    try:
        write_large(sys.stdout.buffer, a.mb if a.mb != 200 else 2048)
    except BrokenPipeError:
        pass
else:
    with open(a.out, "wb") as f:
        (write_large if a.kind == "large" else write_unique)(f, a.mb)
