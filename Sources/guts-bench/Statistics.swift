/// Helpers shared by the benchmark suites.
enum Statistics {
    /// The median of `values` (0 for none): the figure quoted, since machines are noisy.
    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return 0 }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
