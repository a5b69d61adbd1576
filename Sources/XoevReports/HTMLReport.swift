import Foundation
import XoevValidation

/// The HTML report could not be written.
public struct ReportError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// `--report FILE.html`: one self-contained page for people (no external assets): totals, the most frequent
/// codes, a verdict per file and each file's findings with line, column and path, filterable in the browser.
public struct HTMLReport {
    public let path: String
    private var documents: [DocumentSummary] = []
    private let started = Date()

    /// Checks up front that the report can be written (an unwritable path is a usage error, found before the
    /// batch runs, not after).
    public init(path: String) throws {
        self.path = path
        guard FileManager.default.createFile(atPath: path, contents: Data("<!DOCTYPE html>\n".utf8)) else {
            throw ReportError(message: "cannot write the report \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Adds one document's outcome.
    public mutating func write(_ outcome: Outcome) { documents.append(DocumentSummary(outcome)) }

    /// Writes the page (replacing the placeholder atomically).
    public func finish(_ tally: Tally) throws {
        do {
            try Data(render(tally).utf8).write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw ReportError(message: "cannot write the report \(path): \(error.localizedDescription)")
        }
    }

    public func render(_ tally: Tally) -> String {
        let all = documents.flatMap(\.diagnostics)
        let errors = all.filter { $0.severity >= .error }.count
        let warnings = all.count - errors
        var byCode: [String: (findings: Int, documents: Set<Int>)] = [:]
        for (index, doc) in documents.enumerated() {
            for d in doc.diagnostics {
                byCode[d.code, default: (0, [])].findings += 1
                byCode[d.code]!.documents.insert(index)
            }
        }
        let frequent = byCode.sorted { $0.value.findings != $1.value.findings ? $0.value.findings > $1.value.findings : $0.key < $1.key }
            .prefix(10)
        let stamp = ISO8601DateFormatter().string(from: started)

        var h = """
            <!DOCTYPE html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <title>Amtsbote validation report (\(documents.count) documents)</title>
            <style>\(Self.style)</style>
            </head>
            <body>
            <header>
            <h1>Amtsbote validation report</h1>
            <p class="meta">\(xmlEscaped(stamp)) · \(documents.count) document\(documents.count == 1 ? "" : "s")</p>
            </header>
            <section class="totals" aria-label="totals">
            <div class="tile"><span class="n">\(documents.count)</span><span>documents</span></div>
            <div class="tile valid"><span class="n">\(tally.valid)</span><span>valid</span></div>
            <div class="tile invalid"><span class="n">\(tally.invalid)</span><span>invalid</span></div>
            <div class="tile unreadable"><span class="n">\(tally.unreadable)</span><span>unreadable</span></div>
            <div class="tile"><span class="n">\(errors)</span><span>errors</span></div>
            <div class="tile"><span class="n">\(warnings)</span><span>warnings</span></div>
            </section>

            """
        h += "<section aria-label=\"most frequent codes\"><h2>Most frequent codes</h2>\n"
        if frequent.isEmpty {
            h += "<p>No findings.</p>\n"
        } else {
            h += "<table id=\"codes\"><thead><tr><th>code</th><th>findings</th><th>documents</th><th>meaning</th></tr></thead><tbody>\n"
            for (code, count) in frequent {
                let meaning = DiagnosticCatalog.byCode[code]?.meaning ?? ""
                h += "<tr><td><button class=\"code\" data-code=\"\(xmlEscaped(code))\" title=\"show only documents with this code\">\(xmlEscaped(code))</button></td>"
                h += "<td class=\"num\">\(count.findings)</td><td class=\"num\">\(count.documents.count)</td><td>\(xmlEscaped(meaning))</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        h += "</section>\n"
        h += """
            <section aria-label="documents"><h2>Documents</h2>
            <form id="filters" onsubmit="return false">
            <label>Search <input type="search" id="q" placeholder="file, code, message or path"></label>
            <label>Status <select id="status"><option value="">all</option><option>invalid</option><option>valid</option><option>unreadable</option></select></label>
            <label><input type="checkbox" id="warnings" checked> warnings</label>
            <span id="shown" aria-live="polite"></span>
            </form>
            <div id="documents">

            """
        for doc in documents {
            let codes = Set(doc.diagnostics.map(\.code)).sorted().joined(separator: " ")
            let open = doc.status == "valid" ? "" : " open"
            h += "<details class=\"doc \(doc.status)\" data-status=\"\(doc.status)\" data-codes=\"\(xmlEscaped(codes))\"\(documents.count <= 200 ? open : "")>\n"
            h += "<summary><span class=\"badge \(doc.status)\">\(doc.status)</span> <span class=\"file\">\(xmlEscaped(doc.document))</span>"
            h += " <span class=\"schema\">\(xmlEscaped(doc.schema ?? "no schema"))</span>"
            h += " <span class=\"counts\">\(doc.errors.count) errors, \(doc.warnings.count) warnings</span></summary>\n"
            if !doc.diagnostics.isEmpty {
                h += "<table class=\"findings\"><thead><tr><th>severity</th><th>line</th><th>column</th><th>code</th><th>message</th><th>path</th></tr></thead><tbody>\n"
                for d in doc.diagnostics {
                    h += "<tr class=\"\(d.severity.rawValue)\" data-severity=\"\(d.severity.rawValue)\"><td>\(d.severity.rawValue)</td>"
                    h += "<td class=\"num\">\(d.line)</td><td class=\"num\">\(d.column)</td><td class=\"code\"><code>\(xmlEscaped(d.code))</code></td>"
                    h += "<td class=\"message\">\(xmlEscaped(d.message))</td><td class=\"path\"><code>\(xmlEscaped(d.path))</code></td></tr>\n"
                }
                h += "</tbody></table>\n"
            }
            h += "</details>\n"
        }
        h += "</div></section>\n<script>\(Self.script)</script>\n</body>\n</html>\n"
        return h
    }

    static let style = """
        body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:1.5rem;color:#1d2733;background:#fafbfc}
        h1{margin:0;font-size:1.6rem}h2{font-size:1.2rem;margin:1.6rem 0 .6rem}.meta{color:#5b6775;margin:.2rem 0 1rem}
        .totals{display:flex;flex-wrap:wrap;gap:.6rem}.tile{background:#fff;border:1px solid #d8dee4;border-radius:8px;padding:.6rem 1rem;min-width:7rem}
        .tile .n{display:block;font-size:1.6rem;font-weight:600}.tile.valid .n{color:#1a7f37}.tile.invalid .n{color:#cf222e}.tile.unreadable .n{color:#9a6700}
        table{border-collapse:collapse;width:100%;background:#fff}th,td{border-bottom:1px solid #e4e8ec;padding:.3rem .5rem;text-align:left;vertical-align:top}
        th{background:#f1f3f5;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
        code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85em;word-break:break-all}
        button.code{font:inherit;font-family:ui-monospace,monospace;font-size:.85em;border:1px solid #d8dee4;background:#f6f8fa;border-radius:4px;cursor:pointer}
        #filters{display:flex;flex-wrap:wrap;gap:1rem;align-items:center;margin-bottom:.8rem}#filters input[type=search]{width:22rem;padding:.3rem}
        #shown{color:#5b6775}
        details.doc{background:#fff;border:1px solid #d8dee4;border-radius:6px;margin:.35rem 0}details.doc>summary{padding:.45rem .7rem;cursor:pointer}
        details.doc table{margin:0 0 .4rem}.file{font-weight:600;word-break:break-all}.schema,.counts{color:#5b6775;font-size:.9em}
        .badge{display:inline-block;min-width:5.5rem;text-align:center;border-radius:10px;padding:0 .5rem;font-size:.8em;font-weight:600;color:#fff}
        .badge.valid{background:#1a7f37}.badge.invalid{background:#cf222e}.badge.unreadable{background:#9a6700}
        tr.warning td:first-child{color:#9a6700}tr.error td:first-child,tr.fatal td:first-child{color:#cf222e}
        td.code code{white-space:nowrap;word-break:normal}td.message{overflow-wrap:anywhere}td.path{width:30%;min-width:12rem}td.path code{font-size:.8em;color:#3d4a57}
        .hidden{display:none}
        """

    static let script = """
        (function(){
          var q=document.getElementById('q'),st=document.getElementById('status'),w=document.getElementById('warnings'),
              shown=document.getElementById('shown'),docs=[].slice.call(document.querySelectorAll('details.doc'));
          function apply(){
            var text=q.value.trim().toLowerCase(),status=st.value,n=0;
            docs.forEach(function(d){
              var ok=(!status||d.dataset.status===status)&&(!text||d.textContent.toLowerCase().indexOf(text)>=0);
              d.classList.toggle('hidden',!ok);if(ok)n++;
              [].forEach.call(d.querySelectorAll('tr[data-severity=warning]'),function(r){r.classList.toggle('hidden',!w.checked);});
            });
            shown.textContent=n+' of '+docs.length+' documents shown';
          }
          [q,st,w].forEach(function(e){e.addEventListener('input',apply);e.addEventListener('change',apply);});
          [].forEach.call(document.querySelectorAll('button.code'),function(b){
            b.addEventListener('click',function(){q.value=b.dataset.code;st.value='';apply();q.focus();});
          });
          var m=/^#q=(.*)$/.exec(location.hash);if(m){q.value=decodeURIComponent(m[1]);}
          apply();
        })();
        """
}
