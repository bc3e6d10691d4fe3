// Tokens that expire and the app's credentials connector, through a real
// `fieldsync serve` (TestServer in SyncTest.kt). The connector plays the app's
// backend: it asks the server for a fresh token for the device
// (`fieldsync admin issue-token`). Expiry is `--expires-in 0s` (expired at
// once), never waited for; connector calls are counted; every wait has a
// timeout only as a guard against a hang.
package dev.fieldsync

import java.io.File
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** The app's backend: a fresh token for [deviceId] from the server, expiring after [expiresIn]. */
class Backend(private val server: TestServer, private val deviceId: String) {
    @Volatile var expiresIn = "12h"
    val calls = AtomicInteger()

    fun fetch(): String {
        calls.incrementAndGet()
        val out = server.admin("issue-token", deviceId, "--expires-in", expiresIn)
        return Regex("\"token\"\\s*:\\s*\"([0-9a-f]+)\"").find(out)?.groupValues?.get(1) ?: error("no token in $out")
    }
}

fun registerCredentialsTests() {
    test("credentials: an expired token is renewed through the connector; background and foreground sync go on") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tinaDevice = server.enroll("tina").deviceId
            val backend = Backend(server, tinaDevice)
            val tina = Replica.open(File(tempDir(), "tina.db").path, "tina-phone")
            tina.connectWithCredentials(server.url, PROJECT) { backend.fetch() }
            runBlocking {
                withTimeout(60_000) {
                    // The backend hands out tokens that have expired already: the
                    // connector is asked once (no token yet), the round is refused
                    // again, and the app is told.
                    backend.expiresIn = "0s"
                    val refused = assertThrows<FieldSyncException.NotAuthorized> { runBlocking { tina.sync() } }
                    check("expired" in refused.detail) { "the reason: ${refused.detail}" }
                    assertEq(1, backend.calls.get(), "connector calls after the refused sync")
                    assertEq(SyncProblem.NOT_AUTHORIZED, tina.syncStatus().lastProblem, "the status")

                    // Tokens that hold from now on. Background sync meets the expired
                    // token (401 token_expired), asks once, and syncs on.
                    backend.expiresIn = "12h"
                    tina.startBackgroundSync(FAST)
                    tina.syncStatusFlow().first { it.lastSuccessMs != null }
                    assertEq(2, backend.calls.get(), "connector calls once background sync synced")
                    olga.sync()
                    val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                    olga.sync()
                    val all = SectionQuery(project = PROJECT)
                    tina.sectionsFlow(all).first { page -> page.rows.any { it.id == id } }
                    assertEq(2, backend.calls.get(), "connector calls while the token holds")
                    tina.io { stopBackgroundSync() }

                    // The token is replaced behind the device's back (someone ran
                    // issue-token): the next foreground sync asks once and goes on.
                    server.admin("issue-token", tinaDevice)
                    tina.io { setNotes(id, "renewed") }
                    assertEq(1uL, tina.sync().confirmed, "tina's edit confirmed")
                    assertEq(3, backend.calls.get(), "connector calls after the replaced token")
                    assertEq(0L, tina.syncStatus().pendingChanges, "pending")

                    // Foreground with an expired token: replaced again while the backend's
                    // tokens expire at once, tina is told; once they hold, the next sync
                    // meets 401 token_expired, asks once, and goes on.
                    backend.expiresIn = "0s"
                    server.admin("issue-token", tinaDevice)
                    assertThrows<FieldSyncException.NotAuthorized> { runBlocking { tina.sync() } }
                    assertEq(4, backend.calls.get(), "connector calls after the expired one")
                    backend.expiresIn = "12h"
                    tina.io { setNotes(id, "after expiry") }
                    assertEq(1uL, tina.sync().confirmed, "tina's edit confirmed after the expired token")
                    assertEq(5, backend.calls.get(), "connector calls after the renewal")
                    assertEq("after expiry", olga.sync().let { olga.section(id).notes }, "at olga")
                }
            }
            olga.close()
            tina.close()
        }
    }
}
