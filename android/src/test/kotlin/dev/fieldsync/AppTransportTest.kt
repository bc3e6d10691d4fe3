// An app that does all its HTTP itself (as an Android app does with OkHttp, for
// its TLS stack and certificate pinning): sync rounds, photo bytes and the live
// channel all through the app's own clients (java.net.http here), against a
// real `fieldsync serve` (TestServer in SyncTest.kt). Waits are on flows and
// counted events, with a timeout only as a guard against a hang.
package dev.fieldsync

import java.io.File
import java.io.IOException
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.net.http.WebSocket
import java.nio.ByteBuffer
import java.time.Duration
import java.util.concurrent.CompletionStage
import java.util.concurrent.atomic.AtomicInteger
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/** Photo chunks through `java.net.http.HttpClient`, as an app would with OkHttp. */
class JavaHttpPhotoTransport(server: String, private val token: String) : AppPhotoTransport {
    private val client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1).build()
    private val server = server.trimEnd('/')
    val puts = AtomicInteger()
    val gets = AtomicInteger()

    private fun send(request: HttpRequest.Builder): HttpResponse<ByteArray> {
        val response = try {
            client.send(request.header("Authorization", "Bearer $token").build(), HttpResponse.BodyHandlers.ofByteArray())
        } catch (e: IOException) {
            throw TransportException.Unreachable(e.toString())
        }
        if (response.statusCode() != 200) throw TransportException.Server(response.statusCode().toUShort(), response.body())
        return response
    }

    override fun putPhotoChunk(path: String, chunk: ByteArray): ByteArray {
        puts.incrementAndGet()
        val put = HttpRequest.newBuilder(URI.create(server + path))
            .header("Content-Type", "application/octet-stream")
            .PUT(HttpRequest.BodyPublishers.ofByteArray(chunk))
        return send(put).body()
    }

    override fun getPhotoChunk(path: String): PhotoChunkAnswer {
        gets.incrementAndGet()
        val response = send(HttpRequest.newBuilder(URI.create(server + path)).GET())
        val size = response.headers().firstValue("x-photo-size").orElseThrow { TransportException.Unreachable("no x-photo-size") }
        return PhotoChunkAnswer(response.body(), size.toULong())
    }
}

/** The live channel on the app's own WebSocket client: each message (and the opening) tells the replica. */
class AppLiveChannel(server: String, token: String, replica: Replica) {
    val messages = AtomicInteger()
    val firstMessage = CompletableDeferred<Unit>()
    /** The server answered a ping: it is past setting the channel up, so every later commit is told. */
    val answered = CompletableDeferred<Unit>()
    val socket: WebSocket = HttpClient.newHttpClient().newWebSocketBuilder()
        .header("Authorization", "Bearer $token")
        .connectTimeout(Duration.ofSeconds(10))
        .buildAsync(URI.create(liveUrl(server, PROJECT)), object : WebSocket.Listener {
            override fun onOpen(ws: WebSocket) {
                replica.serverChanged() // something may have happened while it was closed
                ws.request(1)
            }

            override fun onText(ws: WebSocket, data: CharSequence, last: Boolean): CompletionStage<*>? {
                messages.incrementAndGet()
                replica.serverChanged()
                firstMessage.complete(Unit)
                ws.request(1)
                return null
            }

            override fun onPong(ws: WebSocket, message: ByteBuffer): CompletionStage<*>? {
                answered.complete(Unit)
                ws.request(1)
                return null
            }
        })
        .join()
        .also { it.sendPing(ByteBuffer.allocate(0)) }
}

fun registerAppTransportTests() {
    test("app transport: photos go up and come down through the app's HTTP client; fetchPhoto works over it") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val token = server.enroll("tina").token
            val tina = Replica.open(File(tempDir(), "tina.db").path, "tina-phone")
            val photos = JavaHttpPhotoTransport(server.url, token)
            tina.connectWith(JavaHttpTransport(server.url, token), PROJECT, photos)
            runBlocking {
                withTimeout(60_000) {
                    olga.sync() // the roster
                    val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                    olga.sync()
                    tina.sync()

                    // Tina's photo goes up through her app's client, in more than one chunk.
                    val jpeg = jpegPhoto()
                    val hers = tina.io { addPhotoBytes(id, jpeg, "duct damage") }
                    val sent = tina.sync()
                    assertEq(1uL, sent.photosSent, "tina's photos sent")
                    check(photos.puts.get() > 2) { "the thumbnail and the full size in chunks: ${photos.puts.get()} PUTs" }
                    assertEq(PhotoState.OnServer, tina.photoStateFlow(id, hers).first(), "at tina after her sync")

                    // Olga (built-in transport) gets its thumbnail and fetches the full size.
                    assertEq(1uL, olga.sync().thumbnailsFetched, "thumbnails olga fetched")
                    check(olga.fetchPhoto(hers).readBytes().contentEquals(jpeg)) { "olga's copy has tina's bytes" }

                    // Olga's photo comes down through tina's app client: thumbnail with the sync, then the full size.
                    val small = jpegPhoto(320, 240)
                    val olgas = olga.io { addPhotoBytes(id, small, "splice closure") }
                    olga.sync()
                    val getsBefore = photos.gets.get()
                    assertEq(1uL, tina.sync().thumbnailsFetched, "thumbnails tina fetched")
                    assertEq(PhotoState.ThumbnailOnly, tina.photoStateFlow(id, olgas).first(), "at tina after her sync")
                    check(tina.fetchPhoto(olgas).readBytes().contentEquals(small)) { "tina's copy has olga's bytes" }
                    check(photos.gets.get() >= getsBefore + 2) { "the thumbnail and the photo came through tina's client" }
                }
            }
            olga.close()
            tina.close()
        }
    }

    test("app transport: the live channel on the app's WebSocket brings another device's edit without a timer") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val token = server.enroll("tina").token
            val tina = Replica.open(File(tempDir(), "tina.db").path, "tina-phone")
            tina.connectWith(JavaHttpTransport(server.url, token), PROJECT)
            runBlocking {
                withTimeout(60_000) {
                    olga.sync()
                    val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                    olga.sync()
                    tina.sync()
                    // Background sync whose timer never fires within the test: only a nudge can bring the edit.
                    val hourly = SyncConfig(intervalMs = 3_600_000uL, editDebounceMs = 20uL, minBackoffMs = 50uL, maxBackoffMs = 500uL)
                    tina.startBackgroundSync(hourly)
                    tina.syncActivityFlow().first { it == SyncActivity.UpToDate } // its first sync is over
                    val live = AppLiveChannel(server.url, token, tina)
                    live.answered.await()

                    olga.io { renameSection(id, "Lindenweg Nord") }
                    olga.sync()
                    live.firstMessage.await() // the server told tina's channel, not a timer
                    val seen = tina.sectionFlow(id).first { it.name == "Lindenweg Nord" }
                    assertEq("Lindenweg Nord", seen.name, "olga's rename at tina")
                    check(live.messages.get() >= 1) { "messages on the app's channel: ${live.messages.get()}" }
                    live.socket.sendClose(WebSocket.NORMAL_CLOSURE, "done").join()
                    tina.stopBackgroundSync()
                }
            }
            olga.close()
            tina.close()
        }
    }

    test("app transport: liveUrl builds the channel's address and refuses a server URL that is not http(s)") {
        assertEq("wss://sync.example.com:443/v1/live?project=build-out", liveUrl("https://sync.example.com/", PROJECT), "liveUrl")
        assertEq("ws://127.0.0.1:8080/v1/live?project=a%20b", liveUrl("http://127.0.0.1:8080", "a b"), "liveUrl")
        assertThrows<FieldSyncException.InvalidInput> { liveUrl("sync.example.com", PROJECT) }
    }
}
