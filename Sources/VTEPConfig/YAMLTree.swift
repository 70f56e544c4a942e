// libyaml, as vendored by Yams (its CYaml module, which SwiftPM makes visible to Yams' dependents).
import CYaml

/// A YAML document as the configuration parser reads it: scalars as their raw text, with each node's line.
///
/// Built from libyaml's events directly rather than through Yams' Node tree, which allocates an event object, a
/// tag object and a Foundation-decoded string per node: for 200,000 VNIs that tree cost about twice the
/// instructions of libyaml itself, and its destruction about as much again as our own checks. Errors are not
/// reported from here: on any failure the caller composes the text with Yams, whose error messages users see.
struct YAMLNode {
    enum Kind {
        /// The text and whether it was written plain (unquoted, not a block scalar): only plain text can be null.
        case scalar(String, plain: Bool)
        case sequence([YAMLNode])
        case mapping([(key: YAMLNode, value: YAMLNode)])
    }

    var kind: Kind
    /// 1-based, where the node starts.
    var line: Int

    var scalar: (string: String, plain: Bool)? { if case .scalar(let s, let plain) = kind { (s, plain) } else { nil } }
    var sequence: [YAMLNode]? { if case .sequence(let items) = kind { items } else { nil } }
    var mapping: [(key: YAMLNode, value: YAMLNode)]? { if case .mapping(let pairs) = kind { pairs } else { nil } }

    struct LoadFailed: Error {}

    /// The line of the node at a configuration key path such as `vnis[3].flood[1]` or `access[0].vhost.socket`
    /// (ConfigRules names what it refuses that way); nil when the file does not hold that key (a default broke
    /// the rule).
    func line(at path: String) -> Int? {
        var node = self
        for part in path.split(separator: ".") {
            var name = Substring(part)
            var index: Int?
            if let open = part.firstIndex(of: "["), part.last == "]" {
                name = part[..<open]
                index = Int(part[part.index(after: open)..<part.index(before: part.endIndex)])
            }
            if !name.isEmpty {
                guard let value = node.mapping?.first(where: { $0.key.scalar?.string == String(name) })?.value else { return nil }
                node = value
            }
            if let index {
                guard let items = node.sequence, items.indices.contains(index) else { return nil }
                node = items[index]
            }
        }
        return node.line
    }

    /// The single document in `text`, nil for an empty stream; LoadFailed for anything libyaml refuses, an
    /// undefined alias or a second document.
    static func load(_ text: String) throws -> YAMLNode? {
        var text = text
        return try text.withUTF8 { bytes in
            var loader = Loader()
            yaml_parser_initialize(&loader.parser)
            defer { yaml_event_delete(&loader.event); yaml_parser_delete(&loader.parser) }
            yaml_parser_set_encoding(&loader.parser, YAML_UTF8_ENCODING)
            yaml_parser_set_input_string(&loader.parser, bytes.baseAddress, bytes.count)
            try loader.next()                                   // stream start
            try loader.next()
            if loader.event.type == YAML_STREAM_END_EVENT { return nil }
            try loader.next()                                   // document start: the root
            let root = try loader.node()
            try loader.next()                                   // document end
            try loader.next()
            guard loader.event.type == YAML_STREAM_END_EVENT else { throw LoadFailed() }
            return root
        }
    }

    /// One event at a time, reused; anchors as Yams composes them (an alias names a node already complete).
    private struct Loader {
        var parser = yaml_parser_t()
        var event = yaml_event_t()
        var anchors: [String: YAMLNode] = [:]
        /// Collections open around the current node. The configuration's own shape is a few levels deep; a limit
        /// keeps a hostile file (10,000 nested `[`) from overflowing the stack here or in Yams after us.
        var depth = 0
        static let maxDepth = 64

        mutating func enter(line: Int) throws {
            depth += 1
            if depth > Self.maxDepth {
                throw ConfigError("", line: line, "nested more than \(Self.maxDepth) levels deep; this is not a vxland configuration")
            }
        }

        mutating func next() throws {
            yaml_event_delete(&event)
            guard yaml_parser_parse(&parser, &event) == 1 else { throw LoadFailed() }
        }

        mutating func node() throws -> YAMLNode {
            let line = Int(event.start_mark.line) + 1
            let anchor: UnsafeMutablePointer<yaml_char_t>?
            let node: YAMLNode
            switch event.type {
            case YAML_SCALAR_EVENT:
                let s = event.data.scalar
                anchor = s.anchor
                let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
                node = YAMLNode(kind: .scalar(text, plain: s.style == YAML_PLAIN_SCALAR_STYLE), line: line)
            case YAML_SEQUENCE_START_EVENT:
                let name = event.data.sequence_start.anchor.map { String(cString: $0) }
                try enter(line: line)
                defer { depth -= 1 }
                var items: [YAMLNode] = []
                try next()
                while event.type != YAML_SEQUENCE_END_EVENT { items.append(try self.node()); try next() }
                node = YAMLNode(kind: .sequence(items), line: line)
                if let name { anchors[name] = node }
                return node
            case YAML_MAPPING_START_EVENT:
                let name = event.data.mapping_start.anchor.map { String(cString: $0) }
                try enter(line: line)
                defer { depth -= 1 }
                var pairs: [(key: YAMLNode, value: YAMLNode)] = []
                try next()
                while event.type != YAML_MAPPING_END_EVENT {
                    let key = try self.node()
                    try next()
                    pairs.append((key, try self.node()))
                    try next()
                }
                node = YAMLNode(kind: .mapping(pairs), line: line)
                if let name { anchors[name] = node }
                return node
            case YAML_ALIAS_EVENT:
                guard let target = anchors[String(cString: event.data.alias.anchor)] else { throw LoadFailed() }
                return target
            default:
                throw LoadFailed()
            }
            if let anchor { anchors[String(cString: anchor)] = node }
            return node
        }
    }
}
