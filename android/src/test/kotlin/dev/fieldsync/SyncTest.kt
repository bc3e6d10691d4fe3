// Sync through a real fieldsync-server on loopback: the `fieldsync` binary
// (cli/, built by scripts/test-kotlin.sh, its path in -Dfieldsync.bin) serves
// a fresh data directory per test on 127.0.0.1:0; its `admin` command sets up
// the project, users and devices, and revokes one while it serves.
package dev.fieldsync

import java.io.File
import java.io.IOException
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.time.Duration
import java.util.concurrent.TimeUnit
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** The project's users and their roles on the server. */
val USERS = listOf("olga" to "office", "fred" to "foreman", "tina" to "technician")

/** A device enrolled on the server: its id and its bearer token. */
data class Enrollment(val deviceId: String, val token: String)

/** `fieldsync serve` on a fresh data directory, with [PROJECT] and [USERS] set up. */
class TestServer : AutoCloseable {
    val dir: File = tempDir()
    private val bin = System.getProperty("fieldsync.bin")
        ?: error("-Dfieldsync.bin=<path of the fieldsync binary> is not set (scripts/test-kotlin.sh sets it)")
    private val process: Process
    /** Where it listens, e.g. `http://127.0.0.1:41234`. */
    val url: String
    /** Its Prometheus metrics, e.g. `http://127.0.0.1:41235/metrics`. */
    val metricsUrl: String

    init {
        admin("create-project", PROJECT)
        for ((user, role) in USERS) admin("add-user", user, "--project", PROJECT, "--role", role)
        process = ProcessBuilder(bin, "serve", "--data", dir.path, "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0")
            .redirectErrorStream(true)
            .start()
        servers += process
        val out = process.inputStream.bufferedReader()
        var metrics: String? = null
        url = generateSequence { out.readLine() }
            .onEach { line -> Regex("metrics on (http://\\S+)").find(line)?.let { metrics = it.groupValues[1] } }
            .firstNotNullOfOrNull { Regex("listening on (http://\\S+)").find(it)?.groupValues?.get(1) }
            ?: error("fieldsync serve did not say where it listens (exit ${process.waitFor()})")
        metricsUrl = metrics ?: error("fieldsync serve did not say where its metrics are")
        Thread { runCatching { out.forEachLine {} } }.apply { isDaemon = true }.start() // keep the pipe drained
    }

    /** `fieldsync --json admin --data <dir> <args>`; returns its output, fails on a non-zero exit. */
    fun admin(vararg args: String): String {
        val p = ProcessBuilder(bin, "--json", "admin", "--data", dir.path, *args).redirectErrorStream(true).start()
        val out = p.inputStream.bufferedReader().readText()
        check(p.waitFor(30, TimeUnit.SECONDS) && p.exitValue() == 0) { "fieldsync admin ${args.toList()}: $out" }
        return out
    }

    fun enroll(user: String): Enrollment {
        val out = admin("enroll", "--user", user, "--name", "$user's phone")
        fun field(name: String) = Regex("\"$name\"\\s*:\\s*\"([0-9a-f]+)\"").find(out)?.groupValues?.get(1)
            ?: error("no $name in $out")
        return Enrollment(field("device_id"), field("token"))
    }

    fun revoke(device: String) {
        admin("revoke", device)
    }

    /** A new replica for [user], enrolled and connected over the built-in transport. */
    fun device(user: String, token: String = enroll(user).token): Replica {
        val r = Replica.open(File(tempDir(), "$user.db").path, "$user-phone")
        r.connect(url, token, PROJECT)
        return r
    }

    /** Stop serving (SIGTERM: rounds in flight finish first). */
    override fun close() {
        if (process.isAlive) {
            process.destroy()
            process.waitFor(10, TimeUnit.SECONDS) || process.destroyForcibly().waitFor(10, TimeUnit.SECONDS)
        }
    }

    companion object {
        /** Every server started, stopped when the JVM exits even if a test did not get to. */
        private val servers = java.util.Collections.synchronizedList(mutableListOf<Process>())

        init {
            Runtime.getRuntime().addShutdownHook(Thread { servers.forEach { it.destroyForcibly() } })
        }
    }
}

/** The app-transport path: sync rounds POSTed by `java.net.http.HttpClient` (as an app would with OkHttp). */
class JavaHttpTransport(server: String, private val token: String) : AppTransport {
    private val client = HttpClient.newBuilder()
        .version(HttpClient.Version.HTTP_1_1)
        .connectTimeout(Duration.ofSeconds(10))
        .build()
    private val uri = URI.create(server.trimEnd('/') + "/v1/sync")
    val rounds = AtomicInteger()

    override fun roundTrip(request: ByteArray): ByteArray {
        rounds.incrementAndGet()
        val post = HttpRequest.newBuilder(uri)
            .timeout(Duration.ofSeconds(30))
            .header("Authorization", "Bearer $token")
            .header("Content-Type", syncContentType())
            .POST(HttpRequest.BodyPublishers.ofByteArray(request))
            .build()
        val response = try {
            client.send(post, HttpResponse.BodyHandlers.ofByteArray())
        } catch (e: IOException) {
            throw TransportException.Unreachable(e.toString())
        }
        if (response.statusCode() != 200) throw TransportException.Server(response.statusCode().toUShort(), response.body())
        return response.body()
    }
}

/** Sync [replicas] in turn until their views of [section] agree and nothing is pending; at most [rounds] times. */
suspend fun converge(section: String, vararg replicas: Replica, rounds: Int = 5) {
    repeat(rounds) {
        for (r in replicas) r.sync()
        val views = replicas.map { it.section(section) }
        if (views.distinct().size == 1 && replicas.all { it.syncStatus().pendingChanges == 0L }) return
    }
    throw AssertionFailed("no convergence after $rounds syncs each")
}

/** Fast background sync for tests. */
val FAST = SyncConfig(intervalMs = 200uL, editDebounceMs = 20uL, minBackoffMs = 50uL, maxBackoffMs = 500uL)

fun registerSyncTests() {
    test("sync: two replicas converge through a real fieldsync-server; the report says whose write won") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                olga.sync() // the first round brings the roster: olga is office
                val id = olga.io { createSection(PROJECT, "Hauptstraße north", ROUTE) }
                olga.io { transition(id, ConstructionState.SURVEYED) }
                val up = olga.sync()
                assertEq(2uL, up.confirmed, "olga's changes confirmed")
                assertEq(0L, olga.syncStatus().pendingChanges, "olga's pending changes")
                val rounds = olga.syncStatus().recentRounds
                check(rounds.size >= 2 && rounds.last().bytesSent == up.bytesSent) { "recent rounds $rounds" }
                val down = tina.sync()
                check(id in down.sectionsChanged) { "sections changed ${down.sectionsChanged}" }
                assertEq(olga.section(id), tina.section(id), "view after the first sync")

                tina.io { recordProgress(id, 5) }
                tina.io { setNotes(id, "trench open") }
                Thread.sleep(5) // olga's stamps are the later ones
                olga.io { recordProgress(id, 8) }
                olga.io { setNotes(id, "water main at km 0.3") }
                olga.sync()
                val report = tina.sync()
                val mine = report.reconciliation.single { it.field == Field.PROGRESS }
                val outcome = mine.outcome
                check(outcome is EditOutcome.Overridden && outcome.rule == Rule.PROGRESS_MAX_WINS) { "outcome $outcome" }
                assertEq("olga", (outcome as EditOutcome.Overridden).by?.user, "overridden by")
                check(outcome.reason.isNotBlank()) { "reason" }

                converge(id, olga, tina)
                val v = tina.section(id)
                assertEq(8, v.progress.toInt(), "progress")
                check("trench open" in v.notes && "water main at km 0.3" in v.notes) { "notes ${v.notes}" }
                val atServer = server.admin("section", id)
                check(Regex("\"progress\"\\s*:\\s*8").containsMatchIn(atServer)) { "server's view $atServer" }
                assertEq(olga.conflicts(id), tina.conflicts(id), "conflict records")
            }
            olga.close()
            tina.close()
        }
    }

    test("sync: background sync sends edits by itself, pauses offline; Flows follow it") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                withTimeout(30_000) {
                    olga.sync()
                    val id = olga.io { createSection(PROJECT, "Ringstraße", ROUTE) }
                    olga.startBackgroundSync(FAST)
                    olga.syncStatusFlow().first { it.pendingChanges == 0L && it.lastSuccessMs != null }
                    tina.startBackgroundSync(FAST)
                    tina.syncStatusFlow().first { it.lastSuccessMs != null }

                    olga.io { recordProgress(id, 7) } // a local edit: background sync sends it after the debounce
                    assertEq(7, tina.sectionFlow(id).first { it.progress.toInt() == 7 }.progress.toInt(), "at tina")

                    olga.setConnectivity(false)
                    delay(300) // a periodic round already under way when the hint came may finish
                    olga.io { setNotes(id, "written offline") }
                    delay(500)
                    assertEq(1L, olga.syncStatus().pendingChanges, "pending while offline")
                    olga.setConnectivity(true)
                    olga.syncStatusFlow().first { it.pendingChanges == 0L }
                    tina.sectionFlow(id).first { it.notes == "written offline" }

                    olga.io { stopBackgroundSync() }
                    tina.io { stopBackgroundSync() }
                    assertEq(olga.section(id), tina.section(id), "views")
                }
            }
            olga.close()
            tina.close()
        }
    }

    test("sync: the live channel brings another device's edit at once, long before the interval") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = server.device("tina")
            runBlocking {
                withTimeout(20_000) {
                    olga.sync()
                    val id = olga.io { createSection(PROJECT, "Am Anger", ROUTE) }
                    olga.sync()
                    tina.sync()
                    tina.startBackgroundSync(FAST.copy(intervalMs = 600_000uL)) // no periodic sync within the test
                    delay(500) // let the live channel connect (a round as it connects would bring the edit too)
                    olga.io { recordProgress(id, 6) }
                    val started = System.nanoTime()
                    olga.sync() // the server tells tina's live channel; tina's background sync runs a round
                    tina.sectionFlow(id).first { it.progress.toInt() == 6 }
                    val ms = (System.nanoTime() - started) / 1_000_000
                    println("BENCH live: olga's edit in tina's view $ms ms after olga's sync began (interval 10 min)")
                    check(ms < 10_000) { "took $ms ms" }
                    tina.io { stopBackgroundSync() }
                }
            }
            olga.close()
            tina.close()
        }
    }

    test("sync: an app transport (java.net.http) to the same server converges with the built-in one") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val transport = JavaHttpTransport(server.url, server.enroll("fred").token)
            val fred = Replica.open(File(tempDir(), "fred.db").path, "fred-phone")
            fred.connectWith(transport, PROJECT)
            runBlocking {
                olga.sync()
                val id = olga.io { createSection(PROJECT, "Bahnhofstraße", ROUTE) }
                olga.sync()
                fred.sync()
                fred.io { transition(id, ConstructionState.SURVEYED) }
                fred.io { recordProgress(id, 12) }
                fred.io { reportLocation(id, ON_ROUTE) }
                val up = fred.sync()
                assertEq(3uL, up.confirmed, "fred's changes confirmed")
                converge(id, olga, fred)
                assertEq(ConstructionState.SURVEYED, olga.section(id).state, "state at olga")
                assertEq(12, olga.section(id).progress.toInt(), "progress at olga")
            }
            check(transport.rounds.get() >= 3) { "rounds through the app transport: ${transport.rounds.get()}" }
            olga.close()
            fred.close()
        }
    }

    test("Offline: a stopped server, an unreachable address, a transport that throws; edits are kept") {
        val server = TestServer()
        val token = server.enroll("olga").token
        val r = server.device("olga", token)
        val id = runBlocking {
            r.sync()
            r.io { createSection(PROJECT, "Lindenweg", ROUTE) }
        }
        server.close()
        val stopped = assertThrows<FieldSyncException.Offline> { runBlocking { r.sync() } }
        check(stopped.text.isNotBlank()) { "text" }
        val status = r.syncStatus()
        assertEq(1L, status.pendingChanges, "the edit is kept")
        check(status.lastError != null) { "status $status" }
        assertEq(SyncProblem.OFFLINE, status.lastProblem, "what it needs")

        r.connect("http://127.0.0.1:1", token, PROJECT)
        assertThrows<FieldSyncException.Offline> { r.syncNow() }

        r.connectWith(object : AppTransport {
            override fun roundTrip(request: ByteArray): ByteArray = throw IOException("airplane mode")
        }, PROJECT)
        val thrown = assertThrows<FieldSyncException.Offline> { r.syncNow() }
        check("airplane mode" in thrown.detail) { thrown.detail }
        r.connectWith(object : AppTransport {
            override fun roundTrip(request: ByteArray): ByteArray = throw TransportException.Unreachable("no signal")
        }, PROJECT)
        check("no signal" in assertThrows<FieldSyncException.Offline> { r.syncNow() }.detail) { "detail" }
        assertEq(1L, r.syncStatus().pendingChanges, "still kept")

        // The log hook: the engine's lines reach the app's own logging.
        val lines = java.util.Collections.synchronizedList(mutableListOf<String>())
        setLogSink(object : LogSink {
            override fun log(level: LogLevel, target: String, message: String) { lines += "$level $target $message" }
        }, LogLevel.INFO)
        assertThrows<FieldSyncException.Offline> { r.syncNow() }
        setLogSink(null, LogLevel.INFO)
        check(lines.any { it.startsWith("WARN fieldsync_core::sync::run sync failed") && "no signal" in it }) { "log lines $lines" }
        assertEq("Lindenweg", r.section(id).name, "the section is still here")
        r.close()
    }

    test("NotAuthorized: a bad token, a revoked device, a user outside the project, through both transports") {
        TestServer().use { server ->
            val bad = "0".repeat(64)
            val stranger = Replica.open(File(tempDir(), "x.db").path, "x-phone")
            stranger.connect(server.url, bad, PROJECT)
            val e = assertThrows<FieldSyncException.NotAuthorized> { stranger.syncNow() }
            check(e.text.isNotBlank()) { "text" }
            stranger.connectWith(JavaHttpTransport(server.url, bad), PROJECT)
            assertThrows<FieldSyncException.NotAuthorized> { stranger.syncNow() }

            val outsider = server.device("sam") // enrolled, but not a member of the project
            assertThrows<FieldSyncException.NotAuthorized> { outsider.syncNow() }

            val enrollment = server.enroll("tina")
            val tina = server.device("tina", enrollment.token)
            runBlocking { tina.sync() }
            server.revoke(enrollment.deviceId)
            val revoked = assertThrows<FieldSyncException.NotAuthorized> { runBlocking { tina.sync() } }
            check(tina.syncStatus().lastError != null) { "status ${tina.syncStatus()}" }
            assertEq(SyncProblem.NOT_AUTHORIZED, tina.syncStatus().lastProblem, "sign in again")
            check(revoked.detail.isNotBlank()) { "detail" }
            tina.close()
            outsider.close()
            stranger.close()
        }
    }
}
