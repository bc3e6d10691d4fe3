// Photos through a real `fieldsync serve` (TestServer in SyncTest.kt): a JPEG
// made with ImageIO goes up from one device, the other sees its thumbnail,
// fetches the full size with progress, and both watch the photo's state move.
// No sleeps: every wait is on a flow or a sync, with a timeout only as a
// guard against a hang.
package dev.fieldsync

import java.awt.image.BufferedImage
import java.io.ByteArrayOutputStream
import java.util.Random
import javax.imageio.ImageIO
import kotlinx.coroutines.CompletableDeferred
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.async
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.onEach
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.flow.transformWhile
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

/**
 * A real JPEG, over 1 MiB at its default size (noise in every channel compresses badly): more than one chunk on the
 * wire whatever the link, as no chunk is larger than 1 MiB (core's chunks grow to the link's
 * speed, so a smaller photo may go in one on a fast machine).
 */
fun jpegPhoto(width: Int = 1600, height: Int = 1200): ByteArray {
    val image = BufferedImage(width, height, BufferedImage.TYPE_INT_RGB)
    val noise = Random(14)
    for (y in 0 until height) for (x in 0 until width) {
        image.setRGB(x, y, noise.nextInt(1 shl 24))
    }
    val out = ByteArrayOutputStream()
    check(ImageIO.write(image, "jpg", out)) { "no JPEG writer" }
    return out.toByteArray()
}

fun registerPhotoTests() {
    test("photos: one device's JPEG goes up, another sees its thumbnail, fetches it with progress; states observed") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val fred = server.device("fred")
            runBlocking {
                withTimeout(60_000) {
                    olga.sync() // the roster
                    val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                    val jpeg = jpegPhoto()
                    check(jpeg.size > 1_100_000) { "the test photo is ${jpeg.size} bytes, not over 1 MiB" }
                    val photoId = olga.io { addPhotoBytes(id, jpeg, "splice closure") }
                    val mine = olga.photoStates(id).single()
                    assertEq(PhotoState.OnThisDeviceOnly, mine.state, "before any sync")
                    assertEq(jpeg.size.toULong(), mine.photo.size, "the record's size")
                    check(mine.photo.thumbnail != null) { "a thumbnail was made: ${mine.photo}" }

                    // Olga's photo observed from before the sync until the server has it.
                    val registered = CompletableDeferred<Unit>()
                    val observed = async(Dispatchers.IO) {
                        olga.photoStateFlow(id, photoId)
                            .onEach { registered.complete(Unit) }
                            .transformWhile { emit(it); it != PhotoState.OnServer }
                            .toList()
                    }
                    registered.await()
                    // Every state an observer is told, unconflated: the upload's chunks show as they go.
                    val told = java.util.Collections.synchronizedList(mutableListOf<PhotoState>())
                    val handle = olga.observePhotos(id, object : PhotosObserver {
                        override fun onUpdate(photos: List<PhotoStatus>) {
                            told += photos.single().state
                        }
                    })
                    val sent = olga.sync()
                    assertEq(1uL, sent.photosSent, "photos sent")
                    check(sent.photoBytesSent >= jpeg.size.toULong()) { "photo bytes sent: ${sent.photoBytesSent}" }
                    val states = observed.await()
                    assertEq(PhotoState.OnThisDeviceOnly, states.first(), "the first state observed ($states)")
                    assertEq(PhotoState.OnServer, states.last(), "the last state observed ($states)")
                    handle.close()
                    val size = jpeg.size.toULong()
                    assertEq(PhotoState.OnThisDeviceOnly, told.first(), "told first ($told)")
                    assertEq(PhotoState.OnServer, told.last(), "told last ($told)")
                    // The photo is larger than the largest chunk: a part is acknowledged first.
                    check(told.any { it is PhotoState.Uploading && it.sent in 1uL until size && it.size == size }) {
                        "a part acknowledged was told before the whole: $told"
                    }

                    // Fred's sync brings the record and the thumbnail, not the full size.
                    val got = fred.sync()
                    assertEq(1uL, got.thumbnailsFetched, "thumbnails fetched")
                    val theirs = fred.photoStates(id).single()
                    assertEq(PhotoState.ThumbnailOnly, theirs.state, "at fred after his sync")
                    val thumbnail = theirs.photo.thumbnail!!
                    val thumbnailFile = fred.photoFile(thumbnail.sha256) ?: error("the thumbnail is not at fred")
                    check(ImageIO.read(java.io.File(thumbnailFile)) != null) { "the thumbnail is a readable image" }
                    assertEq(PhotoState.ThumbnailOnly, fred.photoState(theirs.photo), "photoState of the record")

                    // Fetched with progress: every chunk heard, the last at the full size, the bytes olga's.
                    val progress = mutableListOf<Pair<ULong, ULong>>()
                    val file = fred.fetchPhoto(photoId) { received, size -> synchronized(progress) { progress += received to size } }
                    check(progress.size > 1) { "several chunks: $progress" }
                    check(progress.all { it.second == size }) { "the size with every chunk: $progress" }
                    check(progress.zipWithNext().all { (a, b) -> a.first < b.first }) { "progress rises: $progress" }
                    assertEq(size to size, progress.last(), "the last progress")
                    check(file.readBytes().contentEquals(jpeg)) { "fred's copy has olga's bytes" }
                    assertEq(PhotoState.Available, fred.photoStateFlow(id, photoId).first(), "at fred once fetched")
                    // Fetched once: the second time nothing travels.
                    val again = mutableListOf<ULong>()
                    assertEq(file, fred.fetchPhoto(theirs.photo.sha256!!) { received, _ -> again += received }, "the same file")
                    assertEq(emptyList<ULong>(), again, "progress the second time")
                }
            }
            olga.close()
            fred.close()
        }
    }

    test("photos: over an app transport without a photo transport photos stay on the device and fetchPhoto says why") {
        TestServer().use { server ->
            val olga = server.device("olga")
            val tina = Replica.open(java.io.File(tempDir(), "tina.db").path, "tina-phone")
            tina.connectWith(JavaHttpTransport(server.url, server.enroll("tina").token), PROJECT)
            runBlocking {
                withTimeout(60_000) {
                    olga.sync() // the roster
                    val id = olga.io { createSection(PROJECT, "Lindenweg", ROUTE) }
                    val photoId = olga.io { addPhotoBytes(id, jpegPhoto(64, 48), null) }
                    olga.sync()
                    tina.sync()
                    assertEq(PhotoState.NotFetched, tina.photoStates(id).single().state, "no thumbnail over an app transport")
                    val refused = assertThrows<FieldSyncException.InvalidInput> { runBlocking { tina.fetchPhoto(photoId) } }
                    check("AppPhotoTransport" in refused.detail) { "the reason: ${refused.detail}" }
                }
            }
            olga.close()
            tina.close()
        }
    }
}
