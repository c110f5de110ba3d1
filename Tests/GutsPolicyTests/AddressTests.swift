import GutsPolicy
import XCTest

final class AddressTests: XCTestCase {
    func testIPv4ParsingIsStrict() throws {
        XCTAssertEqual(try ip("192.0.2.1"), .v4(0xC000_0201))
        XCTAssertEqual(try ip("0.0.0.0"), .v4(0))
        XCTAssertEqual(try ip("255.255.255.255"), .v4(.max))
        for bad in ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "1..2.3", "a.b.c.d", "-1.2.3.4",
                    "1.2.3.4 ", " 1.2.3.4", "1.2.3.", ".1.2.3", "1.2.3.4/24", "1234.1.1.1", "1.2.3.4\n"] {
            XCTAssertNil(IPAddress(bad), "'\(bad)' must be refused")
        }
    }

    func testIPv6ParsingAcceptsEveryRFC4291Form() throws {
        XCTAssertEqual(try ip("::"), .v6(0, 0))
        XCTAssertEqual(try ip("::1"), .v6(0, 1))
        XCTAssertEqual(try ip("2001:db8::1"), .v6(0x2001_0DB8_0000_0000, 1))
        XCTAssertEqual(try ip("2001:0DB8:0000:0000:0000:0000:0000:0001"), try ip("2001:db8::1"))
        XCTAssertEqual(try ip("1:2:3:4:5:6:7:8"), .v6(0x0001_0002_0003_0004, 0x0005_0006_0007_0008))
        XCTAssertEqual(try ip("1::"), .v6(0x0001_0000_0000_0000, 0))
        XCTAssertEqual(try ip("::2:3:4:5:6:7:8"), .v6(0x0000_0002_0003_0004, 0x0005_0006_0007_0008))
        XCTAssertEqual(try ip("64:ff9b::192.0.2.1"), .v6(0x0064_FF9B_0000_0000, 0xC000_0201))
        XCTAssertEqual(try ip("fe80::1%eth0"), try ip("fe80::1"), "the zone is ignored")
        XCTAssertEqual(try ip("::ffff:192.0.2.1"), .v4(0xC000_0201), "IPv4-mapped becomes IPv4")
        XCTAssertEqual(try ip("::ffff:c000:201"), .v4(0xC000_0201))
        for bad in [":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::", ":1::", "1::2:",
                    "::1.2.3", "1.2.3.4::", "fe80::1%", "::ffff:1.2.3.4:5", "1:2:3:4:5:6:7:8::", "[::1]", "::1/128",
                    "1:2:3:4:5:6:1.2.3.4:8", String(repeating: "0", count: 80) + "::"] {
            XCTAssertNil(IPAddress(bad), "'\(bad)' must be refused")
        }
    }

    func testCanonicalTextFollowsRFC5952() throws {
        XCTAssertEqual(try ip("2001:0db8:0:0:1:0:0:1").description, "2001:db8::1:0:0:1", "the first of equal zero runs")
        XCTAssertEqual(try ip("2001:db8:0:1:1:1:1:1").description, "2001:db8:0:1:1:1:1:1", "one zero group stays")
        XCTAssertEqual(try ip("0:0:0:0:0:0:0:0").description, "::")
        XCTAssertEqual(try ip("FE80:0:0:0:0:0:0:1").description, "fe80::1")
        XCTAssertEqual(try ip("10.0.0.1").description, "10.0.0.1")
    }

    func testTextRoundTripsForRandomAddresses() throws {
        let seed = testSeed()
        var rng = PolicyRandom(seed: seed)
        for _ in 0..<5_000 {
            var groups = (0..<8).map { _ in UInt64(UInt16.random(in: 0...UInt16.max, using: &rng)) }
            let runStart = Int.random(in: 0..<8, using: &rng)
            for k in runStart..<min(8, runStart + Int.random(in: 0...8, using: &rng)) { groups[k] = 0 }
            let lo = groups[4..<8].reduce(0) { $0 << 16 | $1 }
            let address = IPAddress.v6(groups[0..<4].reduce(0) { $0 << 16 | $1 }, lo)
            let text = address.description
            let mapped = groups[0..<5].allSatisfy { $0 == 0 } && groups[5] == 0xFFFF
            let expected: IPAddress = mapped ? .v4(UInt32(truncatingIfNeeded: lo)) : address
            XCTAssertEqual(IPAddress(text), expected, "seed \(seed): \(text)")
        }
    }

    func testGroups() throws {
        XCTAssertEqual(try group("10.1.2.3"), try group("10.1.2.200"))
        XCTAssertEqual(try group("10.1.2.3").description, "10.1.2.0/24")
        XCTAssertNotEqual(try group("10.1.2.3"), try group("10.1.3.3"))
        XCTAssertNotEqual(try group("127.0.0.1"), try group("127.0.0.2"), "loopback hosts are distinct groups")
        XCTAssertEqual(try group("127.0.0.7").description, "127.0.0.7")
        XCTAssertEqual(try group("::ffff:10.1.2.3"), try group("10.1.2.99"), "IPv4-mapped groups as IPv4")
        XCTAssertEqual(try group("2001:db8:1:ff::1"), try group("2001:db8:1:0::2"))
        XCTAssertEqual(try group("2001:db8:1:ff::1").description, "2001:db8:1::/56")
        XCTAssertNotEqual(try group("2001:db8:1:100::1"), try group("2001:db8:1::1"))
        XCTAssertEqual(try group("::1").description, "::1")
        XCTAssertEqual(try group("2002:a01:203::1"), try group("10.1.2.3"), "6to4 counts as the IPv4 address it embeds")
        XCTAssertEqual(try group("64:ff9b::10.1.2.3"), try group("10.1.2.3"), "NAT64 counts as IPv4")
        XCTAssertNil(AddressGroup(address: "example.org"))
        XCTAssertTrue(try group("10.9.9.9").contains(try ip("10.9.9.1")))
        XCTAssertFalse(try group("10.9.9.9").contains(try ip("10.9.8.1")))
    }

    func testScope() throws {
        let table: [(String, AddressScope)] = [
            ("127.0.0.1", .loopback), ("127.255.0.9", .loopback), ("::1", .loopback), ("0.0.0.0", .loopback), ("::", .loopback),
            ("10.0.0.1", .private), ("172.16.0.1", .private), ("172.31.255.255", .private), ("192.168.1.1", .private),
            ("169.254.1.1", .private), ("100.64.0.1", .private), ("fd00::1", .private), ("fc00::1", .private), ("fe80::1", .private),
            ("172.32.0.1", .global), ("172.15.0.1", .global), ("100.128.0.1", .global), ("8.8.8.8", .global),
            ("2001:db8::1", .global), ("::ffff:192.168.0.1", .private),
        ]
        for (text, scope) in table { XCTAssertEqual(try ip(text).scope, scope, text) }
        XCTAssertTrue(AddressScope.loopback < .private && AddressScope.private < .global)
    }

    func testPrefixes() throws {
        let net = try AddressPrefix.parse("10.1.2.0/24")
        XCTAssertTrue(net.contains(try ip("10.1.2.255")))
        XCTAssertFalse(net.contains(try ip("10.1.3.0")))
        XCTAssertFalse(net.contains(try ip("::ffff:10.1.3.0")))
        XCTAssertTrue(net.contains(try ip("::ffff:10.1.2.1")))
        XCTAssertEqual(net.description, "10.1.2.0/24")

        let six = try AddressPrefix.parse("2001:db8::/48")
        XCTAssertTrue(six.contains(try ip("2001:db8:0:ffff::1")))
        XCTAssertFalse(six.contains(try ip("2001:db8:1::")))
        XCTAssertFalse(six.contains(try ip("10.1.2.3")))

        let all = try AddressPrefix.parse("0.0.0.0/0")
        XCTAssertTrue(all.contains(try ip("203.0.113.9")))
        XCTAssertFalse(all.contains(try ip("2001:db8::1")), "IPv4 and IPv6 never contain each other")

        XCTAssertEqual(try AddressPrefix.parse("10.0.0.1").description, "10.0.0.1")
        XCTAssertEqual(try AddressPrefix.parse("10.0.0.1/32"), try AddressPrefix.parse("10.0.0.1"))
        XCTAssertEqual(try AddressPrefix.parse("::ffff:10.0.0.0/104").description, "10.0.0.0/8")
        XCTAssertEqual(try AddressPrefix.parse("2001:DB8::/32").description, "2001:db8::/32")

        XCTAssertThrowsError(try AddressPrefix.parse("10.1.2.3/24")) { error in
            XCTAssertTrue("\(error)".contains("10.1.2.0/24"), "\(error)")
        }
        for bad in ["10.0.0.0/33", "/24", "10.0.0.0/", "10.0.0.0/024", "10.0.0.0/-1", "fe80::/10/1", "fe80::1%eth0/128",
                    "2001:db8::/129", "::ffff:10.0.0.0/95", "example.org/24", "10.0.0.0/2x", ""] {
            XCTAssertThrowsError(try AddressPrefix.parse(bad), "'\(bad)' must be refused")
        }
    }
}
