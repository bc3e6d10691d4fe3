// HTTPS through the built-in transport: a real `fieldsync serve` behind a TLS
// relay whose certificate a private CA signed (scripts/test-kotlin.sh makes the
// CA, trusted through SSL_CERT_FILE, the trust store the library reads on
// Linux, and a second CA nobody trusts). Rounds and the live channel go over
// TLS together; a certificate nobody vouches for is refused.
package dev.fieldsync

import java.io.File
import java.io.IOException
import java.io.InputStream
import java.io.OutputStream
import java.net.InetAddress
import java.net.ServerSocket
import java.net.Socket
import java.net.URI
import java.security.KeyStore
import java.util.concurrent.atomic.AtomicInteger
import javax.net.ssl.KeyManagerFactory
import javax.net.ssl.SSLContext
import kotlin.concurrent.thread
import kotlinx.coroutines.delay
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** The certificates scripts/test-kotlin.sh made. */
val TLS_DIR = File(System.getProperty("fieldsync.tls") ?: error("-Dfieldsync.tls is not set (scripts/test-kotlin.sh sets it)"))

/** TLS on loopback in front of [target] (a plain `http://` server), with the certificate in `<name>.p12`. */
class TlsRelay(target: String, name: String) : AutoCloseable {
    private val upstream = URI.create(target)
    private val listener: ServerSocket
    val url: String
    val connections = AtomicInteger()

    init {
        val password = "fieldsync".toCharArray()
        val keys = KeyStore.getInstance("PKCS12").apply { File(TLS_DIR, "$name.p12").inputStream().use { load(it, password) } }
        val managers = KeyManagerFactory.getInstance(KeyManagerFactory.getDefaultAlgorithm()).apply { init(keys, password) }
        val tls = SSLContext.getInstance("TLS").apply { init(managers.keyManagers, null, null) }
        listener = tls.serverSocketFactory.createServerSocket(0, 50, InetAddress.getLoopbackAddress())
        url = "https://127.0.0.1:${listener.localPort}"
        thread(isDaemon = true, name = "tls-relay") {
            while (true) {
                val client = try { listener.accept() } catch (e: IOException) { break }
                connections.incrementAndGet()
                thread(isDaemon = true) { relay(client) }
            }
        }
    }

    private fun relay(client: Socket) {
        val server = try { Socket(upstream.host, upstream.port) } catch (e: IOException) { client.close(); return }
        val closeBoth = { runCatching { client.close() }; runCatching { server.close() } }
        thread(isDaemon = true) { pump(server.getInputStream(), client.getOutputStream()); closeBoth() }
        pump(client.getInputStream(), server.getOutputStream())
        closeBoth()
    }

    private fun pump(from: InputStream, to: OutputStream) {
        val buffer = ByteArray(16 * 1024)
        try {
            while (true) {
                val n = from.read(buffer)
                if (n < 0) return
                to.write(buffer, 0, n)
                to.flush()
            }
        } catch (e: IOException) {
            // The other side closed (or the handshake failed): the relay of this connection ends.
        }
    }

    override fun close() = listener.close()
}

/** Live channels the server has open now (its Prometheus metrics). */
fun TestServer.liveChannelsOpen(): Int {
    val metrics = URI.create(metricsUrl).toURL().readText()
    return Regex("^fieldsync_live_channels_open (\\d+)", RegexOption.MULTILINE).find(metrics)?.groupValues?.get(1)?.toInt()
        ?: error("no fieldsync_live_channels_open in the metrics")
}

fun registerTlsTests() {
    test("tls: rounds and the live channel over HTTPS together through the built-in transport; a stranger's certificate is refused") {
        TestServer().use { server ->
            TlsRelay(server.url, "server").use { relay ->
                val olga = Replica.open(File(tempDir(), "olga.db").path, "olga-phone")
                olga.connect(relay.url, server.enroll("olga").token, PROJECT)
                val tina = Replica.open(File(tempDir(), "tina.db").path, "tina-phone")
                tina.connect(relay.url, server.enroll("tina").token, PROJECT)
                runBlocking {
                    withTimeout(60_000) {
                        olga.sync()
                        val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                        assertEq(1uL, olga.sync().confirmed, "olga's section over HTTPS")
                        tina.sync()
                        assertEq("Lindenweg", tina.section(id).name, "at tina over HTTPS")

                        // Background sync whose timer never fires within the test: the live channel (wss://) wakes it.
                        val hourly = SyncConfig(intervalMs = 3_600_000uL, editDebounceMs = 20uL, minBackoffMs = 50uL, maxBackoffMs = 500uL)
                        tina.startBackgroundSync(hourly)
                        tina.syncActivityFlow().first { it == SyncActivity.UpToDate }
                        // Once the server counts her channel open, every later commit is told on it.
                        while (server.liveChannelsOpen() < 1) delay(20)
                        val name = "Lindenweg Nord"
                        olga.io { renameSection(id, name) }
                        olga.sync()
                        tina.sectionFlow(id).first { it.name == name }
                        assertEq(name, tina.section(id).name, "olga's rename at tina, brought by the live channel")
                        tina.stopBackgroundSync()
                    }
                }
                olga.close()
                tina.close()
            }

            // The same server behind a certificate from a CA the device does not trust.
            TlsRelay(server.url, "stranger").use { stranger ->
                val fred = Replica.open(File(tempDir(), "fred.db").path, "fred-phone")
                fred.connect(stranger.url, server.enroll("fred").token, PROJECT)
                val refused = assertThrows<FieldSyncException.Offline> { runBlocking { fred.sync() } }
                check(stranger.connections.get() >= 1) { "the device reached the relay" }
                check("certificate" in refused.detail.lowercase() || "tls" in refused.detail.lowercase() || "invalid peer" in refused.detail.lowercase()) {
                    "the reason names the certificate: ${refused.detail}"
                }
                fred.close()
            }
        }
    }
}
