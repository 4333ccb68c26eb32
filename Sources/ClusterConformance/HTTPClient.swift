import ClusterSpec
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// The runner as an HTTP/1.1 client of the implementation's `http` servers (protocol §6): one request at a
/// time on a connected socket, the response read whole (Content-Length or chunked), the body's `worker`
/// taken as who answered.
enum HTTPClient {
    /// One answered request.
    struct Response {
        var status: Int
        var worker: JSONValue
        /// Whether the server keeps the connection open for another request.
        var keepAlive: Bool
    }

    /// The largest response head or body the client accepts.
    static let maxResponse = 1 << 20

    /// Writes one request and reads its response; `.failure` carries the code logged as `unanswered`
    /// (`EPROTO` for a malformed response, with `detail` saying what was wrong).
    static func exchange(_ fd: Int32, method: String, path: String, host: String, keepAlive: Bool,
                         until deadline: ContinuousClock.Instant) -> Result<Response, HTTPFailure> {
        var request = "\(method) \(path) HTTP/1.1\r\nHost: \(host)\r\nConnection: \(keepAlive ? "keep-alive" : "close")\r\n"
        if method == "POST" || method == "PUT" { request += "Content-Length: 0\r\n" }
        request += "\r\n"
        do { try writeAll(fd, Array(request.utf8)) } catch { return .failure(HTTPFailure(code: error.code, detail: "writing the request")) }
        var reader = ResponseReader(fd: fd, deadline: deadline)
        return reader.read(head: method == "HEAD")
    }

    /// Why a request got no usable answer.
    struct HTTPFailure: Error {
        var code: String
        var detail: String
    }

    /// Reads one response from a socket, buffering what arrives.
    struct ResponseReader {
        let fd: Int32
        let deadline: ContinuousClock.Instant
        var buffer: [UInt8] = []

        init(fd: Int32, deadline: ContinuousClock.Instant) {
            self.fd = fd
            self.deadline = deadline
        }

        /// Reads more bytes; nil on success, or the failure.
        mutating func fill() -> HTTPFailure? {
            var chunk = [UInt8](repeating: 0, count: 16384)
            while true {
                guard waitReadable(fd, until: deadline) else { return HTTPFailure(code: "ETIMEDOUT", detail: "waiting for the response") }
                let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    return HTTPFailure(code: errnoName(errno), detail: "reading the response")
                }
                if n == 0 { return HTTPFailure(code: "EOF", detail: "the connection ended before the response was complete") }
                buffer += chunk[0..<n]
                if buffer.count > HTTPClient.maxResponse { return HTTPFailure(code: "EPROTO", detail: "a response longer than 1 MiB") }
                return nil
            }
        }

        /// Takes `n` bytes from the front, reading more as needed.
        mutating func take(_ n: Int) -> Result<[UInt8], HTTPFailure> {
            while buffer.count < n { if let f = fill() { return .failure(f) } }
            defer { buffer.removeFirst(n) }
            return .success(Array(buffer.prefix(n)))
        }

        /// Takes one CRLF-terminated line.
        mutating func line() -> Result<String, HTTPFailure> {
            while true {
                if let i = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    var bytes = Array(buffer[..<i])
                    buffer.removeFirst(i + 1)
                    if bytes.last == UInt8(ascii: "\r") { bytes.removeLast() }
                    return .success(String(decoding: bytes, as: UTF8.self))
                }
                if let f = fill() { return .failure(f) }
            }
        }

        mutating func read(head: Bool) -> Result<Response, HTTPFailure> {
            func proto(_ detail: String) -> Result<Response, HTTPFailure> { .failure(HTTPFailure(code: "EPROTO", detail: detail)) }
            let statusLine: String
            switch line() { case .success(let l): statusLine = l; case .failure(let f): return .failure(f) }
            let parts = statusLine.split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]), (100...599).contains(status) else {
                return proto("the status line is \(quote(statusLine))")
            }
            var headers: [String: String] = [:]
            while true {
                let l: String
                switch line() { case .success(let x): l = x; case .failure(let f): return .failure(f) }
                if l.isEmpty { break }
                guard let colon = l.firstIndex(of: ":") else { return proto("a header line without ':': \(quote(l))") }
                headers[l[..<colon].trimmingCharacters(in: .whitespaces).lowercased()] = l[l.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            let connection = headers["connection"]?.lowercased()
            let keepAlive = parts[0] == "HTTP/1.1" ? connection != "close" : connection == "keep-alive"
            var body: [UInt8] = []
            if !head {
                if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
                    while true {
                        let sizeLine: String
                        switch line() { case .success(let x): sizeLine = x; case .failure(let f): return .failure(f) }
                        guard let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16), size >= 0 else {
                            return proto("a chunk size line \(quote(sizeLine))")
                        }
                        if size == 0 {
                            // Trailers, then the empty line.
                            while true {
                                switch line() { case .success(let x): if x.isEmpty { break } else { continue }; case .failure(let f): return .failure(f) }
                                break
                            }
                            break
                        }
                        switch take(size + 2) { case .success(let b): body += b.prefix(size); case .failure(let f): return .failure(f) }
                        if body.count > HTTPClient.maxResponse { return proto("a body longer than 1 MiB") }
                    }
                } else if let lengthText = headers["content-length"] {
                    guard let length = Int(lengthText), length >= 0, length <= HTTPClient.maxResponse else {
                        return proto("Content-Length \(quote(lengthText))")
                    }
                    switch take(length) { case .success(let b): body = b; case .failure(let f): return .failure(f) }
                } else {
                    return proto("a response with neither Content-Length nor chunked encoding")
                }
            }
            let text = String(decoding: body, as: UTF8.self)
            guard let answer = try? JSONValue.parse(text), let worker = answer["worker"] else {
                return proto("the body is not {\"worker\": …}: \(quote(text))")
            }
            return .success(Response(status: status, worker: worker, keepAlive: keepAlive))
        }
    }
}
