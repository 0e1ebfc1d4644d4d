//! Samples and their summaries: median and p99 (nearest rank).

/// A series of measurements of one thing, in one unit.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub unit: &'static str,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(label: impl Into<String>, unit: &'static str) -> Series {
        Series {
            label: label.into(),
            unit,
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, value: f64) {
        self.values.push(value);
    }

    pub fn extend(&mut self, values: impl IntoIterator<Item = f64>) {
        self.values.extend(values);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the two middle values for an even count).
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The nearest-rank percentile `p` (0–100).
    pub fn percentile(&self, p: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn p99(&self) -> f64 {
        self.percentile(99.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p99() {
        let mut s = Series::new("x", "ms");
        for v in 1..=200 {
            s.push(v as f64);
        }
        assert_eq!(s.median(), 100.5);
        assert_eq!(s.p99(), 198.0);
        let mut one = Series::new("y", "ms");
        one.push(3.0);
        assert_eq!(one.median(), 3.0);
        assert_eq!(one.p99(), 3.0);
    }
}
