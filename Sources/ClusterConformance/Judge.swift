import ClusterSpec

/// An expectation that did not hold, with what was expected and what was observed.
public struct ExpectationFailure: Sendable, CustomStringConvertible {
    /// Where the expectation is written.
    public var location: SourceLocation
    /// The expectation, in the spec's words.
    public var expected: String
    /// What the log showed instead.
    public var observed: String
    /// The spec's `because` note, if any.
    public var because: String?

    public var description: String {
        var s = "\(location): expected \(expected)\n  observed \(observed)"
        if let because { s += "\n  because: \(because)" }
        return s
    }
}

/// Judges expectations against a log. Knows the vocabulary of `Specs/README.md` and nothing about any
/// particular spec.
public enum Judge {
    /// Every expectation that fails on `events`, with `variables` substituted into the expectations.
    public static func failures(of expectations: [Expectation], in events: [Event],
                                variables: [String: JSONValue] = [:]) -> [ExpectationFailure] {
        var failures: [ExpectationFailure] = []
        for e in expectations {
            for instance in expand(e) {
                if let (expected, observed) = check(substitute(instance.kind, variables), events) {
                    let suffix = instance.binding.map { " (for \($0))" } ?? ""
                    failures.append(ExpectationFailure(location: e.location, expected: expected + suffix,
                                                       observed: observed, because: e.because))
                }
            }
        }
        return failures
    }

    // MARK: - Matching

    /// Whether an event matches every condition of a selector.
    public static func matches(_ selector: Selector, _ event: Event) -> Bool {
        selector.fields.allSatisfy { field, predicate in holds(predicate, event[field]) }
    }

    /// Whether a predicate holds for a field value (nil when the field is absent).
    public static func holds(_ p: Predicate, _ value: JSONValue?) -> Bool {
        switch p {
        case .equals(let expected):
            guard let value else { return false }
            return value == expected
        case .list(let items):
            guard let array = value?.arrayValue, array.count == items.count else { return false }
            return zip(items, array).allSatisfy { holds($0, $1) }
        case .partial(let members):
            guard case .object(let object)? = value else { return false }
            return members.allSatisfy { key, q in holds(q, object[key]) }
        case .not(let q):
            return !holds(q, value)
        case .oneOf(let options):
            return options.contains { holds($0, value) }
        case .range(let lo, let hi):
            guard case .number(let d)? = value else { return false }
            return (lo.map { d >= $0 } ?? true) && (hi.map { d <= $0 } ?? true)
        case .absent(let absent):
            return (value == nil) == absent
        case .type(let name):
            return value?.typeName == name
        case .contains(let q):
            return value?.arrayValue?.contains { holds(q, $0) } ?? false
        case .all(let parts):
            return parts.allSatisfy { holds($0, value) }
        }
    }

    // MARK: - Checks

    /// nil when the expectation holds; otherwise (expected, observed) texts.
    static func check(_ kind: Expectation.Kind, _ events: [Event]) -> (String, String)? {
        switch kind {
        case .never(let sel):
            let hits = events.filter { matches(sel, $0) }
            return hits.isEmpty ? nil : ("no event matching \(render(sel))", "\(hits.count): \(lines(hits))")

        case .sequence(let sels):
            var from = 0
            var matched: [Event] = []
            for (i, sel) in sels.enumerated() {
                guard let j = events[from...].firstIndex(where: { matches(sel, $0) }) else {
                    let expected = "in order: " + sels.map(render).joined(separator: " → ")
                    let anywhere = events.filter { matches(sel, $0) }
                    var observed = matched.isEmpty ? "" : "matched \(lines(matched)); then "
                    observed += anywhere.isEmpty
                        ? "no event matching \(render(sel)) (step \(i + 1)) at all"
                        : "no event matching \(render(sel)) (step \(i + 1)) after that; it occurs earlier: \(lines(anywhere))"
                    return (expected, observed)
                }
                matched.append(events[j])
                from = j + 1
            }
            return nil

        case .events(let sel, let count, let each, let same, let distinct, let groups, let cycle, let increasing):
            let hits = events.filter { matches(sel, $0) }
            switch count {
            case .exactly(let n)? where hits.count != n:
                return ("exactly \(n) event\(n == 1 ? "" : "s") matching \(render(sel))", "\(hits.count)\(hits.isEmpty ? "" : ": " + lines(hits))")
            case .range(let lo, let hi)? where !(lo.map { hits.count >= $0 } ?? true) || !(hi.map { hits.count <= $0 } ?? true):
                let range = [lo.map { "at least \($0)" }, hi.map { "at most \($0)" }].compactMap { $0 }.joined(separator: " and ")
                return ("\(range) events matching \(render(sel))", "\(hits.count)\(hits.isEmpty ? "" : ": " + lines(hits))")
            case nil where hits.isEmpty:
                return ("at least one event matching \(render(sel))", "none")
            default: break
            }
            if let each, let bad = hits.first(where: { !matches(each, $0) }) {
                return ("every event matching \(render(sel)) to match \(render(each))",
                        "\(mismatch(each, bad)) in \(bad.line)")
            }
            for field in same {
                let values = Set(hits.map { $0[field] })
                if values.count > 1 {
                    return ("'\(field)' equal across the events matching \(render(sel))",
                            "\(values.count) different values: \(lines(hits))")
                }
            }
            for field in distinct {
                let values = hits.map { $0[field] }
                if Set(values).count != values.count {
                    return ("'\(field)' different in every event matching \(render(sel))", "repeated values: \(lines(hits))")
                }
            }
            if let groups, let problem = checkGroups(groups, hits) {
                return ("\(render(groups)) among the events matching \(render(sel))", problem)
            }
            if let cycle {
                let values = hits.map { $0[cycle] }
                let period = Set(values).count
                let rotates = zip(values.dropFirst(period), values).allSatisfy { $0 == $1 }
                    && Set(values.prefix(period)).count == period
                if !rotates {
                    return ("'\(cycle)' to rotate strictly among the events matching \(render(sel))",
                            "the order " + values.map { $0.map(\.jsonText) ?? "-" }.joined(separator: ", "))
                }
            }
            if let increasing {
                let values: [Double?] = hits.map { if case .number(let n)? = $0[increasing] { n } else { nil } }
                if let i = values.indices.first(where: { values[$0] == nil }) {
                    return ("'\(increasing)' to be a number in every event matching \(render(sel))", hits[i].line)
                }
                if let i = values.indices.dropFirst().first(where: { values[$0]! <= values[$0 - 1]! }) {
                    return ("'\(increasing)' to increase strictly, in log order, over the events matching \(render(sel))",
                            "\(JSONValue.number(values[i - 1]!).jsonText) then \(JSONValue.number(values[i]!).jsonText) (events \(i) and \(i + 1) of \(hits.count))")
                }
            }
            return nil
        }
    }

    static func checkGroups(_ rule: GroupRule, _ hits: [Event]) -> String? {
        var counts: [JSONValue?: Int] = [:]
        var order: [JSONValue?] = []
        for e in hits {
            let v = e[rule.by]
            if counts[v] == nil { order.append(v) }
            counts[v, default: 0] += 1
        }
        let observed = order.map { "\($0.map(\.jsonText) ?? "-"): \(counts[$0]!)" }.joined(separator: ", ")
        if let each = rule.each {
            return counts.values.allSatisfy({ $0 == each }) ? nil : "{\(observed)}"
        }
        let expected = rule.counts ?? []
        for (value, n) in expected where counts[value, default: 0] != n { return "{\(observed)}" }
        let listed = Set(expected.map(\.value))
        if counts.keys.contains(where: { $0 == nil || !listed.contains($0!) }) { return "{\(observed)}" }
        return nil
    }

    // MARK: - forEach and variables

    struct Instance {
        var kind: Expectation.Kind
        var binding: String?
    }

    static func expand(_ e: Expectation) -> [Instance] {
        guard let (field, values) = e.forEach else { return [Instance(kind: e.kind, binding: nil)] }
        return values.map { v in
            func bind(_ s: Selector) -> Selector { Selector(s.order.map { ($0, s.fields[$0]!) } + [(field, .equals(v))]) }
            let kind: Expectation.Kind
            switch e.kind {
            case .events(let sel, let c, let each, let same, let distinct, let groups, let cycle, let increasing):
                kind = .events(bind(sel), count: c, each: each, same: same, distinct: distinct, groups: groups, cycle: cycle,
                               increasing: increasing)
            case .never(let sel): kind = .never(bind(sel))
            case .sequence(let sels): kind = .sequence(sels.map(bind))
            }
            return Instance(kind: kind, binding: "\(field): \(v.jsonText)")
        }
    }

    static func substitute(_ kind: Expectation.Kind, _ vars: [String: JSONValue]) -> Expectation.Kind {
        guard !vars.isEmpty else { return kind }
        switch kind {
        case .events(let sel, let c, let each, let same, let distinct, let groups, let cycle, let increasing):
            return .events(Variables.substitute(sel, vars), count: c, each: each.map { Variables.substitute($0, vars) },
                           same: same, distinct: distinct, groups: groups, cycle: cycle, increasing: increasing)
        case .never(let sel): return .never(Variables.substitute(sel, vars))
        case .sequence(let sels): return .sequence(sels.map { Variables.substitute($0, vars) })
        }
    }

    // MARK: - Rendering

    /// A selector in the spec's flow syntax.
    public static func render(_ s: Selector) -> String {
        "{" + s.order.map { "\($0): \(render(s.fields[$0]!))" }.joined(separator: ", ") + "}"
    }

    static func render(_ p: Predicate) -> String {
        switch p {
        case .equals(let v): return shortened(v.jsonText)
        case .list(let items): return "[" + items.map(render).joined(separator: ", ") + "]"
        case .partial(let m): return "{" + m.keys.sorted().map { "\($0): \(render(m[$0]!))" }.joined(separator: ", ") + "}"
        case .not(let q): return "{$not: \(render(q))}"
        case .oneOf(let qs): return "{$oneOf: [" + qs.map(render).joined(separator: ", ") + "]}"
        case .range(let lo, let hi):
            return "{" + [lo.map { "$min: \(JSONValue.number($0).jsonText)" }, hi.map { "$max: \(JSONValue.number($0).jsonText)" }]
                .compactMap { $0 }.joined(separator: ", ") + "}"
        case .absent(let b): return "{$absent: \(b)}"
        case .type(let t): return "{$type: \(t)}"
        case .contains(let q): return "{$contains: \(render(q))}"
        case .all(let ps): return ps.map(render).joined(separator: " and ")
        }
    }

    static func render(_ g: GroupRule) -> String {
        if let each = g.each { return "each '\(g.by)' value \(each) times" }
        return "counts by '\(g.by)' {" + (g.counts ?? []).map { "\($0.value.jsonText): \($0.count)" }.joined(separator: ", ") + "}"
    }

    /// The first field of a selector an event fails, explained.
    static func mismatch(_ s: Selector, _ e: Event) -> String {
        for field in s.order where !holds(s.fields[field]!, e[field]) {
            return "\(field) is \(e[field].map { shortened($0.jsonText) } ?? "absent"), not \(render(s.fields[field]!))"
        }
        return "no field fails"
    }

    /// Text cut to a readable length for a report (a spec may compare megabyte payloads).
    static func shortened(_ text: String, limit: Int = 300) -> String {
        let utf8 = text.utf8
        guard utf8.count > limit else { return text }
        return String(decoding: utf8.prefix(limit), as: UTF8.self) + "… (\(utf8.count) bytes)"
    }

    static func lines(_ events: [Event], limit: Int = 8) -> String {
        var parts = events.prefix(limit).map { shortened($0.line) }
        if events.count > limit { parts.append("… \(events.count - limit) more") }
        return "\n    " + parts.joined(separator: "\n    ")
    }
}
