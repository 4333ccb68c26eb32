// Latency samples: exact nearest-rank percentiles and a power-of-two histogram.

/// Percentiles of latency samples by the nearest-rank rule: the p-th percentile of n ascending samples
/// is the sample at rank ⌈p·n⌉ (1-based), so it is always a value that was observed.
public enum Percentiles {
    /// The nearest-rank percentile of ascending `sorted` (`p` in 0...1); nil when there are no samples.
    public static func nearestRank<T: Comparable>(_ sorted: [T], _ p: Double) -> T? {
        guard !sorted.isEmpty else { return nil }
        // The small allowance keeps a product such as 0.07 × 100 = 7.000000000000001 at rank 7.
        let rank = max(1, Int((p * Double(sorted.count) - 1e-9).rounded(.up)))
        return sorted[min(rank, sorted.count) - 1]
    }
}

/// What a set of latency samples says, in microseconds.
public struct LatencySummary: Sendable, Equatable {
    /// How many samples.
    public var count: Int
    /// Percentiles and extremes, microseconds (0 when there are no samples).
    public var p50: Double, p99: Double, p999: Double, min: Double, max: Double, mean: Double
    /// Counts per bucket: bucket `i` holds the samples of at most 2^i µs and more than 2^(i-1) µs (bucket 0:
    /// up to 1 µs). Trailing empty buckets are left out.
    public var histogram: [Int]

    /// Summarises samples given in nanoseconds.
    public init(nanoseconds samples: [UInt64]) {
        let sorted = samples.sorted()
        func us(_ ns: UInt64?) -> Double { Double(ns ?? 0) / 1000 }
        count = sorted.count
        p50 = us(Percentiles.nearestRank(sorted, 0.5))
        p99 = us(Percentiles.nearestRank(sorted, 0.99))
        p999 = us(Percentiles.nearestRank(sorted, 0.999))
        min = us(sorted.first)
        max = us(sorted.last)
        mean = sorted.isEmpty ? 0 : sorted.reduce(0.0) { $0 + Double($1) } / Double(sorted.count) / 1000
        histogram = LatencySummary.histogram(of: sorted)
    }

    /// The power-of-two histogram of samples in nanoseconds (see `histogram`).
    static func histogram(of samples: [UInt64]) -> [Int] {
        var buckets: [Int] = []
        for ns in samples {
            let us = (ns + 999) / 1000  // whole microseconds, rounded up
            let i = us <= 1 ? 0 : 64 - (us - 1).leadingZeroBitCount  // the smallest i with 2^i >= us
            if buckets.count <= i { buckets += Array(repeating: 0, count: i + 1 - buckets.count) }
            buckets[i] += 1
        }
        return buckets
    }
}
