// Live section lists, change notifications and the sync activity, mirroring
// android/src/test/kotlin/dev/fieldsync/LiveTest.kt against a real
// `fieldsync serve` (TestServer in SyncTests.swift; skipped without
// FIELDSYNC_BIN). Notifications are counted, never timed. macOS only; not run
// where no Swift toolchain is (see ios/README.md).
import Foundation
import XCTest

@testable import FieldSync

/// Keeps every page it is told (no buffering policy: each one counts).
final class Pages: SectionListObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [SectionPage] = []
    var values: [SectionPage] {
        lock.lock()
        defer { lock.unlock() }
        return seen
    }

    func onUpdate(page: SectionPage) throws {
        lock.lock()
        seen.append(page)
        lock.unlock()
    }
}

final class LiveTests: XCTestCase {
    func testAFilteredListFollowsAnotherDevicesSyncAndFlagsUnsyncedRows() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let tina = try server.device("tina")
        try await olga.sync()
        let a = try olga.createSection(project: project, name: "A", route: route)
        let b = try olga.createSection(project: project, name: "B", route: route)
        try await olga.sync()
        try await tina.sync()

        let surveyed = SectionQuery(project: project, states: [.surveyed])
        let pages = Pages()
        let handle = tina.observeSections(query: surveyed, observer: pages)
        XCTAssertEqual(pages.values.map(\.total), [0])
        _ = try olga.transition(section: a, to: .surveyed)
        try await olga.sync()
        try await tina.sync()
        XCTAssertEqual(pages.values.last?.rows.map(\.id), [a])

        try tina.setNotes(section: b, text: "tina was here")
        let unsyncedOnly = SectionQuery(project: project, withUnsyncedEdits: true)
        for await page in tina.sectionListUpdates(unsyncedOnly) {
            XCTAssertEqual(page.rows.map(\.id), [b])
            XCTAssertTrue(page.rows[0].unsynced)
            break
        }
        try await tina.sync()
        XCTAssertEqual(try tina.querySections(query: unsyncedOnly).total, 0)
        let recent = try tina.querySections(query: SectionQuery(project: project, order: .lastChange))
        XCTAssertEqual(recent.rows.first?.id, b)
        handle.cancel()
    }

    func testAMergeTellsOnlyTheObserversOfTheSectionsItChanged() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let tina = try server.device("tina")
        try await olga.sync()
        let ids = try (1...3).map { try olga.createSection(project: project, name: "S\($0)", route: route) }
        try await olga.sync()
        try await tina.sync()
        let views = ids.map { _ in Recorder() }
        let handles = try zip(ids, views).map { try tina.observeSection(section: $0, observer: $1) }
        _ = try olga.recordProgress(section: ids[1], percent: 5)
        try await olga.sync()
        try await tina.sync()
        XCTAssertEqual(views.map(\.values.count), [1, 2, 1])
        handles.forEach { $0.cancel() }
    }

    func testTheSyncActivityShowsABootstrapRoundByRound() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        try await olga.sync()
        for i in 0..<64 {
            let id = try olga.createSection(project: project, name: "Bulk \(i)", route: route)
            try olga.setNotes(section: id, text: String((0..<40_000).map { _ in "abcdefghijklmnopqrstuvwxyz".randomElement()! }))
        }
        try await olga.sync()
        let fred = try server.device("fred")
        final class Activities: SyncStatusObserver, @unchecked Sendable {
            let lock = NSLock()
            var seen: [SyncActivity] = []
            func onUpdate(status: SyncStatus) throws {
                lock.lock(); defer { lock.unlock() }
                if seen.last != status.activity { seen.append(status.activity) }
            }
        }
        let activities = Activities()
        let handle = fred.observeSyncStatus(observer: activities)
        let report = try await fred.sync()
        XCTAssertGreaterThanOrEqual(report.rounds, 2)
        XCTAssertEqual(activities.seen.first, .waiting)
        XCTAssertEqual(activities.seen.dropFirst().first, .connecting)
        XCTAssertEqual(activities.seen.last, .upToDate)
        let progress = activities.seen.compactMap { if case .syncing(let p) = $0 { return p } else { return nil } }
        XCTAssertGreaterThanOrEqual(progress.count, 2)
        XCTAssertTrue(progress[0].moreToDownload)
        XCTAssertEqual(progress.last?.downloadedDocuments, 64)
        handle.cancel()
    }
}
