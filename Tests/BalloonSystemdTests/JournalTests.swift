// SPDX-License-Identifier: Apache-2.0
import Glibc
import Logging
import Testing

@testable import BalloonSystemd

@Suite struct JournalFieldNameTests {
    @Test(arguments: [
        ("memory-total", "MEMORY_TOTAL"),
        ("chunkSize", "CHUNKSIZE"),
        ("peer", "PEER"),
        ("a.b/c d", "A_B_C_D"),
        ("2fa", "META_2FA"),
        ("_pid", "META__PID"),
        ("", "META_"),
        ("message", "META_MESSAGE"),
        ("Priority", "META_PRIORITY"),
        ("code_file", "META_CODE_FILE"),
        ("code-whatever", "META_CODE_WHATEVER"),
        ("syslog_identifier", "META_SYSLOG_IDENTIFIER"),
        ("errno", "META_ERRNO"),
        ("größe", "GR__E"),
    ])
    func sanitised(key: String, name: String) {
        #expect(JournalFields.fieldName(key) == name)
    }

    @Test func longKeysAreCutToJournaldsLimit() {
        let name = JournalFields.fieldName(String(repeating: "k", count: 100))
        #expect(name.count == 64)
        #expect(name == String(repeating: "K", count: 64))
    }

    @Test func everyNameIsValidForJournald() {
        for key in ["a", "-", "9", "é", "x y", "_", "__x", "MESSAGE_ID", "object_pid", String(repeating: "é", count: 70)] {
            let name = JournalFields.fieldName(key)
            #expect(!name.isEmpty && name.count <= 64)
            #expect(name.unicodeScalars.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" })
            #expect(name.first != "_" && !(name.first!.isNumber))
            #expect(!JournalFields.reserved.contains(name))
        }
    }
}

@Suite struct JournalEntryTests {
    @Test func priorities() {
        #expect(JournalFields.priority(.trace) == 7)
        #expect(JournalFields.priority(.debug) == 7)
        #expect(JournalFields.priority(.info) == 6)
        #expect(JournalFields.priority(.notice) == 5)
        #expect(JournalFields.priority(.warning) == 4)
        #expect(JournalFields.priority(.error) == 3)
        #expect(JournalFields.priority(.critical) == 2)
    }

    @Test func entryFields() {
        let fields = JournalFields.make(
            level: .warning, message: "host attached", metadata: ["port": "/dev/vport0p1", "memory-total": "1 GiB"],
            label: "balloond", identifier: "balloond", file: "BalloonDaemon/Daemon.swift", function: "run()", line: 42)
        #expect(fields == [
            "MESSAGE=host attached memory-total=1 GiB port=/dev/vport0p1",
            "PRIORITY=4",
            "SYSLOG_IDENTIFIER=balloond",
            "CODE_FILE=BalloonDaemon/Daemon.swift",
            "CODE_LINE=42",
            "CODE_FUNC=run()",
            "LOGGER_LABEL=balloond",
            "MEMORY_TOTAL=1 GiB",
            "PORT=/dev/vport0p1",
        ])
    }

    @Test func keysThatSanitiseAlikeBothSurvive() {
        let fields = JournalFields.make(
            level: .info, message: "m", metadata: ["a-b": "1", "a_b": "2", "message": "3"],
            label: "l", identifier: "balloond", file: "f", function: "g", line: 1)
        #expect(fields.contains("A_B=1"))
        #expect(fields.contains("A_B_2=2"))
        #expect(fields.contains("META_MESSAGE=3"))
        #expect(fields.filter { $0.hasPrefix("MESSAGE=") }.count == 1)
    }

    @Test func multiLineValuesStayOneField() {
        let fields = JournalFields.make(
            level: .error, message: "line one\nline two", metadata: [:],
            label: "l", identifier: "balloond", file: "f", function: "g", line: 1)
        #expect(fields.first == "MESSAGE=line one\nline two")
    }
}

@Suite struct JournalStreamTests {
    @Test func matchesTheDescriptorsDeviceAndInode() throws {
        let fd = open("/proc/self/exe", O_RDONLY)
        try #require(fd >= 0)
        defer { close(fd) }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        #expect(JournalStream.matches(descriptor: fd, value: "\(st.st_dev):\(st.st_ino)"))
        #expect(!JournalStream.matches(descriptor: fd, value: "\(st.st_dev):\(st.st_ino + 1)"))
        #expect(!JournalStream.matches(descriptor: fd, value: "\(st.st_dev + 1):\(st.st_ino)"))
    }

    @Test(arguments: [nil, "", "1", "1:", ":2", "a:b", "1:2:3", "-1:2", " 1:2"])
    func malformedValuesNeverMatch(value: String?) {
        #expect(!JournalStream.matches(descriptor: 0, value: value))
    }

    @Test func aClosedDescriptorNeverMatches() {
        #expect(!JournalStream.matches(descriptor: 987_654, value: "1:2"))
    }
}
