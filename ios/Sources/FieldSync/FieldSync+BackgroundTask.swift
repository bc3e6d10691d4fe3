// Sync while the app is suspended (iOS): a BGAppRefreshTask that runs `sync()`, stopped when iOS
// says its time is up. Not compiled here (no Swift toolchain on the machine this was written on).

#if canImport(BackgroundTasks) && os(iOS)
import BackgroundTasks
import Foundation

/// Background sync through `BGTaskScheduler`. Add `identifier` to the app's Info.plist
/// (`BGTaskSchedulerPermittedIdentifiers`) and enable the "Background fetch" mode, then:
/// `FieldSyncBackgroundTask.register(identifier: "com.example.app.sync") { AppModel.shared.replica }`
/// before `application(_:didFinishLaunchingWithOptions:)` returns, and
/// `FieldSyncBackgroundTask.schedule(identifier:)` when the app goes to the background.
public enum FieldSyncBackgroundTask {
    /// Handle the task: each run schedules the next one, syncs the replica `replica` returns (nil:
    /// not signed in yet, nothing to do) and, when iOS ends the task's time, cancels the sync, which
    /// stops before its next round (every round answered before is kept; the next run goes on).
    public static func register(
        identifier: String, every interval: TimeInterval = 15 * 60, replica: @escaping @Sendable () -> Replica?
    ) {
        BGTaskScheduler.shared.register(forTaskWithIdentifier: identifier, using: nil) { task in
            schedule(identifier: identifier, after: interval)
            let sync = Task {
                do {
                    if let replica = replica() { _ = try await replica.sync() }
                    task.setTaskCompleted(success: true)
                } catch {
                    // Offline or cancelled: edits are kept and go out next time.
                    task.setTaskCompleted(success: false)
                }
            }
            task.expirationHandler = { sync.cancel() }
        }
    }

    /// Ask iOS to run the task again, no sooner than `after` seconds from now (iOS decides when).
    public static func schedule(identifier: String, after interval: TimeInterval = 15 * 60) {
        let request = BGAppRefreshTaskRequest(identifier: identifier)
        request.earliestBeginDate = Date(timeIntervalSinceNow: interval)
        do {
            try BGTaskScheduler.shared.submit(request)
        } catch {
            // Not permitted (Info.plist) or too many requests: foreground sync still runs.
        }
    }
}
#endif
