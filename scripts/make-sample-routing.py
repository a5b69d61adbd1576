#!/usr/bin/env python3
"""Builds Samples/routing/ from the municipality lists in ../shared/corpus/municipalities.

    python3 scripts/make-sample-routing.py [CORPUS]

Writes the current municipality list (copied), the AGS retired since 2011, and a routing table in which every
current municipality of Nordrhein-Westfalen has its own Postfach for Meldewesen, Gewerbe and Hundesteuer, building permits of the Kreise that are not
kreisfrei go to the Kreis's Bauaufsicht, a few Gemeindeverbände of Rheinland-Pfalz take the Meldewesen of their
municipalities, and every Land has a Land-level default.
"""
import csv, os, shutil, sys

corpus = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../../shared/corpus")
src = os.path.join(corpus, "municipalities")
out = os.path.join(os.path.dirname(__file__), "../Samples/routing")
os.makedirs(out, exist_ok=True)

current_csv = "gemeinden_ags_ars_2026-04-30.csv"
shutil.copyfile(os.path.join(src, current_csv), os.path.join(out, current_csv))
rows = list(csv.DictReader(open(os.path.join(src, current_csv), encoding="utf-8")))
current = {r["ags"] for r in rows}
old = [r["Amtl.Gemeindeschlüssel"] for r in
       csv.DictReader(open(os.path.join(src, "gemeindeverzeichnis_digineo_2011.csv"), encoding="utf-8"))]
retired = sorted({a for a in old if a not in current})
with open(os.path.join(out, "ags-retired-since-2011.txt"), "w") as f:
    f.write("# AGS in the Gemeindeverzeichnis of 31.12.2011 that are not current on 2026-04-30 (municipal reforms)\n")
    f.writelines(a + "\n" for a in retired)

BAUGENEHMIGUNG = "99013001000000"   # illustrative Leistungsschlüssel for building permits
MELDEWESEN = "99115001001000"       # illustrative: Anmeldung einer Wohnung
GEWERBE = "99050012104000"          # illustrative: Gewerbeanmeldung
HUNDESTEUER = "99061001012000"      # illustrative: Anmeldung zur Hundesteuer
lands = sorted({(r["land_code"], r["land"]) for r in rows})
nrw = [r for r in rows if r["land_code"] == "05"]
kreise = {}
for r in nrw:
    kreise.setdefault(r["kreis_code"], []).append(r)
rlp_verbaende = sorted({r["ars"][:9] for r in rows if r["land_code"] == "07" and r["verband_code"] != "0000"})[:5]

def slug(text):
    table = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
    text = text.split(",")[0].translate(table).lower()
    return "".join(c if c.isalnum() and c.isascii() else "-" for c in text).strip("-")[:40].strip("-")

with open(os.path.join(out, "routing-2026-04-30.tsv"), "w") as f:
    f.write("# amtsbote-routing/1\n# valid-from: 2026-04-30\n")
    f.write("# Sample routing for Amtsbote, built by scripts/make-sample-routing.py from the Destatis municipality list.\n")
    f.write("service\tarea\tpostfach\n")
    f.write("# Land-level defaults\n")
    for code, name in lands:
        f.write(f"*\t{code}\tland-{code}-{slug(name)}\n")
    f.write("# Building permits in NRW: the Kreis's Bauaufsicht for Kreise with several municipalities\n")
    for kreis, members in sorted(kreise.items()):
        if len(members) > 1:
            f.write(f"{BAUGENEHMIGUNG}\t{kreis}\tkreis-{kreis}-bauaufsicht\n")
    f.write("# Meldewesen of some Verbandsgemeinden in Rheinland-Pfalz (ARS level 9)\n")
    for verband in rlp_verbaende:
        f.write(f"{MELDEWESEN}\t{verband}\tverband-{verband}-meldeamt\n")
    f.write("# Every current municipality of Nordrhein-Westfalen, for the services it handles itself\n")
    for r in nrw:
        for service in (MELDEWESEN, GEWERBE, HUNDESTEUER):
            f.write(f"{service}\t{r['ags']}\tgemeinde-{r['ags']}-{slug(r['name'])}\n")
print(f"{len(rows)} municipalities, {len(retired)} retired keys, {len(nrw)} NRW rules")
