// Photos, mirroring android/src/test/kotlin/dev/fieldsync/PhotoTest.kt:
// through a real `fieldsync serve` when FIELDSYNC_BIN names the binary
// (skipped otherwise). macOS only; never compiled or run where no Swift
// toolchain is (see ios/README.md).
import CoreGraphics
import Foundation
import ImageIO
import XCTest

@testable import FieldSync

/// A real JPEG of a few hundred KB (noise compresses badly): several chunks on the wire.
func jpegPhoto(width: Int = 800, height: Int = 600) -> Data {
    let context = CGContext(
        data: nil, width: width, height: height, bitsPerComponent: 8, bytesPerRow: width * 4,
        space: CGColorSpaceCreateDeviceRGB(), bitmapInfo: CGImageAlphaInfo.noneSkipLast.rawValue)!
    let pixels = context.data!.bindMemory(to: UInt8.self, capacity: width * height * 4)
    var seed: UInt32 = 14
    for y in 0..<height {
        for x in 0..<width {
            seed = seed &* 1_664_525 &+ 1_013_904_223
            let i = (y * width + x) * 4
            pixels[i] = UInt8(x % 256)
            pixels[i + 1] = UInt8(y % 256)
            pixels[i + 2] = UInt8(truncatingIfNeeded: seed >> 24)
        }
    }
    let out = NSMutableData()
    let destination = CGImageDestinationCreateWithData(out as CFMutableData, "public.jpeg" as CFString, 1, nil)!
    CGImageDestinationAddImage(destination, context.makeImage()!, nil)
    precondition(CGImageDestinationFinalize(destination), "no JPEG")
    return out as Data
}

/// Every progress a fetch reported.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private var seen: [(UInt64, UInt64)] = []
    func add(_ received: UInt64, _ size: UInt64) { lock.lock(); seen.append((received, size)); lock.unlock() }
    var all: [(UInt64, UInt64)] { lock.lock(); defer { lock.unlock() }; return seen }
}

final class PhotoTests: XCTestCase {
    func testAJpegGoesUpItsThumbnailComesDownAndItIsFetchedWithProgress() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let fred = try server.device("fred")
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Lindenweg", route: route)
        let jpeg = jpegPhoto()
        let photoID = try olga.addPhotoBytes(section: id, bytes: jpeg, caption: "splice closure")
        XCTAssertEqual(try olga.photoStates(section: id).map(\.state), [.onThisDeviceOnly])
        XCTAssertNotNil(try olga.photoStates(section: id)[0].photo.thumbnail)

        var updates = try olga.photoUpdates(id).makeAsyncIterator()
        let first = await updates.next()
        XCTAssertEqual(first?.first?.state, .onThisDeviceOnly)
        let sent = try await olga.sync()
        XCTAssertEqual(sent.photosSent, 1)
        var states: [PhotoState] = first?.map(\.state) ?? []
        while states.last != .onServer, let next = await updates.next() { states += next.map(\.state) }
        XCTAssertEqual(states.last, .onServer, "\(states)")

        let got = try await fred.sync()
        XCTAssertEqual(got.thumbnailsFetched, 1)
        let theirs = try fred.photoStates(section: id)[0]
        XCTAssertEqual(theirs.state, .thumbnailOnly)
        XCTAssertNotNil(try fred.photoFile(sha256: theirs.photo.thumbnail!.sha256))

        let progress = Progress()
        let file = try await fred.fetchPhoto(photoID) { received, size in progress.add(received, size) }
        let size = UInt64(jpeg.count)
        XCTAssertGreaterThan(progress.all.count, 1)
        XCTAssertEqual(progress.all.last?.0, size)
        XCTAssertTrue(progress.all.allSatisfy { $0.1 == size })
        XCTAssertEqual(try Data(contentsOf: file), jpeg)
        XCTAssertEqual(try fred.photoState(photo: theirs.photo), .available)
    }

    func testOverAnAppTransportFetchPhotoSaysWhy() async throws {
        let server = try TestServer()
        let olga = try server.device("olga")
        let tina = try Replica.open(path: try tempDir().appendingPathComponent("tina.db").path, device: "tina-phone")
        try tina.connectWith(transport: URLSessionTransport(server: server.url, token: server.enroll("tina").token), project: project)
        try await olga.sync()
        let id = try olga.createSection(project: project, name: "Lindenweg", route: route)
        let photoID = try olga.addPhotoBytes(section: id, bytes: jpegPhoto(width: 64, height: 48), caption: nil)
        try await olga.sync()
        try await tina.sync()
        XCTAssertEqual(try tina.photoStates(section: id).map(\.state), [.notFetched])
        do {
            _ = try await tina.fetchPhoto(photoID)
            XCTFail("fetched over an app transport")
        } catch let e as FieldSyncError {
            XCTAssertTrue(invalidInput(e) && e.text.contains("built-in transport"), "\(e)")
        }
    }
}
