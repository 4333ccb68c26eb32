import Foundation
import Testing
@testable import ClusterSpec

/// What the basis keys mean across the suite: the loader checks each file's form; these check the suite's
/// citations against Node's own documentation.
@Suite("Spec basis")
struct BasisTests {
    @Test("every spec of the suite states its basis and cites accordingly")
    func suiteCites() throws {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.isEmpty)
        #expect(suite.specs.count >= 2)
        for spec in suite.specs {
            switch spec.basis {
            case .documented:
                #expect(!spec.refs.isEmpty, "\(spec.id)")
            case .observed:
                #expect(!spec.source.isEmpty || spec.from != nil, "\(spec.id)")
                #expect(spec.quote == nil, "\(spec.id)")
                // The reader of a red cell learns from the comment what goes beyond the docs.
                #expect(spec.comment?.contains("Observed: ") == true, "\(spec.id): an observed spec's comment says why, in an \"Observed: …\" sentence")
            }
        }
        // Both kinds exist: a suite where everything is one kind has not been reviewed.
        #expect(Set(suite.specs.map(\.basis)) == Set(Basis.allCases))
    }

    /// Node's documentation as installed with Node (Debian and NodeSource packages put the Markdown sources in
    /// /usr/share/doc/nodejs/api); `NODE_DOCS` names another directory.
    static let docs = ProcessInfo.processInfo.environment["NODE_DOCS"] ?? "/usr/share/doc/nodejs/api"
    static var docsInstalled: Bool { FileManager.default.fileExists(atPath: docs + "/cluster.md") }

    @Test("every ref names a section of Node's docs, and every quote is in a section its spec names",
          .enabled(if: docsInstalled, "Node's Markdown docs are not installed (set NODE_DOCS)"))
    func quotesAreVerbatim() throws {
        let suite = SpecLoader(features: suiteFeatures).loadSuite(paths: [Paths.specs])
        #expect(suite.problems.isEmpty)
        var pages: [String: [String: String]] = [:]
        func sections(_ doc: String) throws -> [String: String] {
            if let s = pages[doc] { return s }
            let page = String(doc.dropFirst("api/".count))
            let s = NodeDocs.sections(try String(contentsOfFile: Self.docs + "/" + page + ".md", encoding: .utf8))
            pages[doc] = s
            return s
        }
        var quotes = 0
        for spec in suite.specs {
            var texts: [String] = []
            for ref in spec.refs {
                let text = try sections(ref.doc)[ref.anchor]
                #expect(text != nil, "\(spec.id): \(ref.doc)#\(ref.anchor) is not a section of Node's docs")
                texts += text.map { [$0] } ?? []
            }
            guard let quote = spec.quote else { continue }
            quotes += 1
            let wanted = NodeDocs.normalized(quote)
            #expect(texts.contains { $0.contains(wanted) }, "\(spec.id): the quote is not in the sections its refs name: \(quote)")
        }
        #expect(quotes > 0)
    }

    @Test("the section reader: anchors as Node's docs make them, duplicates numbered, code and comments left out")
    func sectionReader() {
        let md = """
            # Cluster
            ## How it works
            <!-- YAML
            added: v0.1.0
            -->
            The primary [`listens`][] on a port,
            and [hands it on](x.md).
            ```js
            # not a heading
            ```
            ## Event: `'exit'`
            First.
            ### `worker.send(message[, sendHandle[, options]][, callback])`
            ## Event: `'exit'`
            Second.
            """
        let s = NodeDocs.sections(md)
        #expect(s["how-it-works"] == "The primary `listens` on a port, and hands it on.")
        #expect(s["event-exit"] == "First.")
        #expect(s["event-exit_1"] == "Second.")
        #expect(s["workersendmessage-sendhandle-options-callback"] == "")
        #expect(s.count == 5)
    }
}

/// Reads Node's Markdown documentation into sections keyed by the anchors its HTML pages use.
enum NodeDocs {
    /// The anchor Node's doc tool gives a heading: lowercased, only letters, digits, spaces, `-` and `_`
    /// kept, spaces turned into `-`; a repeated anchor gets `_1`, `_2`, … on the same page.
    static func anchor(_ heading: String) -> String {
        String(heading.lowercased().unicodeScalars.compactMap { c -> Character? in
            if c == " " { return "-" }
            let ascii = c.isASCII && (c.properties.isAlphabetic || ("0"..."9").contains(c) || c == "-" || c == "_")
            return ascii ? Character(c) : nil
        })
    }

    /// Each section's own text (up to the next heading of any level), without code blocks, HTML comments or
    /// link targets, whitespace collapsed.
    static func sections(_ markdown: String) -> [String: String] {
        var result: [String: String] = [:]
        var seen: [String: Int] = [:]
        var current: String?
        var lines: [Substring] = []
        var inCode = false, inComment = false
        func close() { if let current { result[current] = normalized(lines.joined(separator: "\n")) } }
        for line in markdown.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") { inCode.toggle(); continue }
            if inCode { continue }
            if inComment { if line.contains("-->") { inComment = false }; continue }
            if line.hasPrefix("<!--") { inComment = !line.contains("-->"); continue }
            let hashes = line.prefix { $0 == "#" }
            if (1...6).contains(hashes.count), line.dropFirst(hashes.count).first == " " {
                close()
                let base = anchor(String(line.dropFirst(hashes.count + 1)))
                let n = seen[base, default: 0]
                seen[base] = n + 1
                current = n == 0 ? base : "\(base)_\(n)"
                lines = []
            } else {
                lines.append(line)
            }
        }
        close()
        return result
    }

    /// Links written as their text (`[text][]`, `[text][ref]`, `[text](url)`) and whitespace collapsed, so a
    /// quote on one line matches the wrapped source.
    static func normalized(_ text: String) -> String {
        let closers: [Character: Character] = ["[": "]", "(": ")"]
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "[") {
            out += rest[..<open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "]") else { out += rest[open...]; rest = ""; break }
            let label = rest[afterOpen..<close]
            let next = rest.index(after: close)
            if next < rest.endIndex, let end = closers[rest[next]], let stop = rest[rest.index(after: next)...].firstIndex(of: end) {
                out += label
                rest = rest[rest.index(after: stop)...]
            } else {
                out += rest[open...close]
                rest = rest[next...]
            }
        }
        out += rest
        return out.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}
