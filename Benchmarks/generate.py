#!/usr/bin/env python3
"""Deterministic benchmark workloads for Amtsbote (valid against Schemas/).

    generate.py large  OUT.xml  [--mb 200]   one Gewerbeanmeldung with many gesetzlicherVertreter (no xs:unique)
    generate.py unique OUT.xml  [--mb 200]   one Hundesteuer-Anmeldung with many hund (xs:unique on chipnummer)
    generate.py small  DIR      [--count 10000]  files of 5-20 KB (Gewerbeanmeldung with 10-45 Vertreter)
    generate.py stream -        [--mb 2048]  the large document written to standard output, never stored
    generate.py wohnsitz DIR    [--count 2000]  Wohnsitz-Anmeldungen for Köln of about 14 KB (10 persons each),
                                             the input of the sample transformation (scripts/bench-transform)

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

ap = argparse.ArgumentParser()
ap.add_argument("kind", choices=["large", "unique", "small", "stream", "wohnsitz"])
ap.add_argument("out")
ap.add_argument("--mb", type=int, default=200)
ap.add_argument("--count", type=int, default=10000)
a = ap.parse_args()
if a.kind == "small":
    write_small(a.out, a.count)
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
