import XCTest
import Yams
@testable import VTEPConfig

/// The parser reads libyaml's events itself (YAMLNode) instead of Yams' Node tree: both must see the same
/// document, node for node: text, plain or not, line, and aliases resolved.
final class YAMLTreeTests: XCTestCase {
    func assertSameAsYams(_ text: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let ours = try YAMLNode.load(text)
        let theirs = try Yams.compose(yaml: text)
        XCTAssertEqual(ours.map(describe), theirs.map(describe), file: file, line: line)
    }

    func describe(_ node: YAMLNode) -> String {
        switch node.kind {
        case .scalar(let s, let plain): "\(node.line):\(plain ? "plain" : "quoted")'\(s)'"
        case .sequence(let items): "\(node.line):[\(items.map(describe).joined(separator: ", "))]"
        case .mapping(let pairs): "\(node.line):{\(pairs.map { describe($0.key) + ": " + describe($0.value) }.joined(separator: ", "))}"
        }
    }

    func describe(_ node: Node) -> String {
        let line = node.mark?.line ?? 0
        switch node {
        case .scalar(let s): return "\(line):\(s.style == .plain ? "plain" : "quoted")'\(s.string)'"
        case .sequence(let items): return "\(line):[\(items.map(describe).joined(separator: ", "))]"
        case .mapping(let pairs): return "\(line):{\(pairs.map { describe($0.key) + ": " + describe($0.value) }.joined(separator: ", "))}"
        }
    }

    func testTheTreeIsYamsTree() throws {
        try assertSameAsYams(ConfigParserTests.valid)
        try assertSameAsYams("""
            # a comment
            underlay: &u
              port: "p0"
              ip: '10.99.0.1/24'
              mac: ~
              empty:
              note: |
                two
                lines
              folded: >
                one
                line
            copy: *u
            list: [ a, "b", 'c', [nested, { k: v }], ]
            block:
              - x
              - - y
                - z
            "quoted key": null
            ? complex
            : value
            unicode: "é\\u00e9 \\x41"
            multi: [1,
              2,
              3]
            """)
        try assertSameAsYams("""
            {"underlay": {"port": "0", "ip": "10.99.0.1/24"},
             "vnis": [{"vni": 42, "flood": ["10.99.0.2"]}]}
            """)
        try assertSameAsYams("---\nkey: value\n...\n")
        try assertSameAsYams("---\n")
        try assertSameAsYams("plain scalar")
        try assertSameAsYams("")
        try assertSameAsYams("# only a comment\n")
    }

    /// What libyaml refuses, and what Yams' composer does (an undefined alias, a second document), is reported
    /// with Yams' message.
    func testErrorsAreYamsErrors() {
        for text in ["underlay: [", "a: *nowhere", "a: 1\n---\nb: 2", "a: b: c", "\t- tab", "x: \"unterminated"] {
            XCTAssertThrowsError(try YAMLNode.load(text), text)
            XCTAssertThrowsError(try Yams.compose(yaml: text), text)
            guard case .failure(let cause) = Result(catching: { try Yams.compose(yaml: text) }) else { continue }
            // libyaml's words and place, never the text around it (the file may not be a configuration at all).
            guard let yaml = cause as? YamlError else { XCTFail("\(cause)"); continue }
            XCTAssertThrowsError(try ConfigParser.parse(text)) { error in
                XCTAssertEqual("\(error)", "configuration: not valid YAML or JSON: \(ConfigParser.describe(yaml))", text)
                XCTAssertFalse("\(error)".contains(text.split(separator: "\n")[0]), "\(error) quotes the file")
            }
        }
    }
}
