// Swift idioms over the generated bindings (Generated/FieldSync.swift, made by
// build-xcframework.sh from the Rust library): AsyncSequences for the
// observers, async forms for calls that block, and the text of an error.
// Nothing here passes a call through unchanged; everything else is the
// generated API itself.
import Foundation

// MARK: - Observers as AsyncSequences

private final class SectionRelay: SectionObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SectionView>.Continuation
    init(_ continuation: AsyncStream<SectionView>.Continuation) { self.continuation = continuation }
    func onUpdate(view: SectionView) throws { continuation.yield(view) }
}

private final class ConflictsRelay: ConflictsObserver, @unchecked Sendable {
    private let continuation: AsyncStream<[ConflictRecord]>.Continuation
    init(_ continuation: AsyncStream<[ConflictRecord]>.Continuation) { self.continuation = continuation }
    func onUpdate(conflicts: [ConflictRecord]) throws { continuation.yield(conflicts) }
}

private final class SyncStatusRelay: SyncStatusObserver, @unchecked Sendable {
    private let continuation: AsyncStream<SyncStatus>.Continuation
    init(_ continuation: AsyncStream<SyncStatus>.Continuation) { self.continuation = continuation }
    func onUpdate(status: SyncStatus) throws { continuation.yield(status) }
}

extension Replica {
    /// The validated view of `section`: the current one first, then every
    /// change (local writes and merges). Iterating keeps an observer
    /// registered; ending the iteration (or cancelling its task) cancels it.
    /// Only the newest view waits for a slow consumer. Throws
    /// `FieldSyncError.NotFound` if there is no such section.
    ///
    ///     for await view in try replica.sectionUpdates(id) { label.text = "\(view.progress) %" }
    public func sectionUpdates(_ section: String) throws -> AsyncStream<SectionView> {
        let (stream, continuation) = AsyncStream.makeStream(of: SectionView.self, bufferingPolicy: .bufferingNewest(1))
        let handle = try observeSection(section: section, observer: SectionRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// The conflict records of `section` (of every section when `nil`): the current ones first, then every change.
    public func conflictUpdates(_ section: String? = nil) -> AsyncStream<[ConflictRecord]> {
        let (stream, continuation) = AsyncStream.makeStream(of: [ConflictRecord].self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeConflicts(section: section, observer: ConflictsRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }

    /// The sync status: the current one first, then every change.
    public func syncStatusUpdates() -> AsyncStream<SyncStatus> {
        let (stream, continuation) = AsyncStream.makeStream(of: SyncStatus.self, bufferingPolicy: .bufferingNewest(1))
        let handle = observeSyncStatus(observer: SyncStatusRelay(continuation))
        continuation.onTermination = { _ in handle.cancel() }
        return stream
    }
}

// MARK: - Blocking calls, off the caller's thread

/// Run `work` on a global queue and await its result.
private func offCallerThread<T>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            continuation.resume(with: Result { try work() })
        }
    }
}

extension Replica {
    /// Run `body` on this replica off the caller's thread. Every replica call
    /// touches the disk and writes return only once durable, so from the main
    /// actor: `try await replica.run { try $0.recordProgress(section: id, percent: 40) }`.
    public func run<T>(_ body: @escaping @Sendable (Replica) throws -> T) async throws -> T {
        try await offCallerThread { try body(self) }
    }

    // When the sync client lands: `public func sync() async throws -> SyncReport` around the blocking
    // `syncNow()`, and an AsyncSequence of the background sync's state beside `syncStatusUpdates()`.
}

/// Open (or create) a replica off the caller's thread (opening may upgrade the database's schema).
public func openReplica(path: String, device: String) async throws -> Replica {
    try await offCallerThread { try Replica.open(path: path, device: device) }
}

// MARK: - Errors

extension FieldSyncError {
    /// The words to show the person using the app (the rule's reason, or what to do next).
    public var text: String {
        switch self {
        case .RefusedByRule(_, let reason):
            return reason
        case .NotAuthorized(let detail), .Offline(let detail), .Storage(let detail), .InvalidInput(let detail),
             .NotFound(let detail):
            return detail
        }
    }
}
