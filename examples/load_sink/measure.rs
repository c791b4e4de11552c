//! The measurements `tests/cluster/load` takes of the processes and the API server, read from
//! its measurement file: one fact a line, appended as the run goes.
//!
//! ```text
//! param NAME VALUE                 the run's parameters, printed as they are
//! mark NAME UNIX_SECONDS           baseline, churn_start, churn_end, drained
//! rss UNIX_SECONDS KB              the operator's VmRSS, every second
//! cpu PROCESS start|end TICKS      utime+stime from /proc/PID/stat
//! clk_tck TICKS_PER_SECOND
//! api FLOW_SCHEMA start|end COUNT  apiserver_flowcontrol_dispatched_requests_total
//! pods COUNT                       pods in the traced namespace when the churn ended
//! metric NAME VALUE                the operator's own metrics at the end
//! ```

use std::collections::BTreeMap;

#[derive(Debug, Default, PartialEq)]
pub struct Measures {
    pub params: Vec<(String, String)>,
    pub marks: BTreeMap<String, f64>,
    pub rss: Vec<(f64, u64)>,
    /// Process → (start, end) ticks.
    pub cpu: BTreeMap<String, (Option<u64>, Option<u64>)>,
    pub clk_tck: Option<u64>,
    /// Flow schema → (start, end) dispatched requests.
    pub api: BTreeMap<String, (Option<u64>, Option<u64>)>,
    pub pods: Option<u64>,
    pub metrics: BTreeMap<String, f64>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("measurement line {line}: {why}: {text}")]
pub struct ParseError {
    line: usize,
    why: &'static str,
    text: String,
}

impl Measures {
    pub fn parse(text: &str) -> Result<Measures, ParseError> {
        let mut m = Measures::default();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let err = |why| ParseError {
                line: i + 1,
                why,
                text: line.to_string(),
            };
            let num = |s: &str| s.parse::<f64>().map_err(|_| err("not a number"));
            let int = |s: &str| s.parse::<u64>().map_err(|_| err("not a whole number"));
            let start_end = |s: &str| match s {
                "start" => Ok(true),
                "end" => Ok(false),
                _ => Err(err("want start or end")),
            };
            match f[..] {
                [] => {}
                ["param", name, ref value @ ..] => {
                    m.params.push((name.into(), value.join(" ")));
                }
                ["mark", name, t] => {
                    m.marks.insert(name.into(), num(t)?);
                }
                ["rss", t, kb] => m.rss.push((num(t)?, int(kb)?)),
                ["cpu", process, which, ticks] => {
                    let slot = m.cpu.entry(process.into()).or_default();
                    let ticks = Some(int(ticks)?);
                    if start_end(which)? {
                        slot.0 = ticks
                    } else {
                        slot.1 = ticks
                    }
                }
                ["clk_tck", ticks] => m.clk_tck = Some(int(ticks)?),
                ["api", schema, which, count] => {
                    let slot = m.api.entry(schema.into()).or_default();
                    let count = Some(num(count)? as u64);
                    if start_end(which)? {
                        slot.0 = count
                    } else {
                        slot.1 = count
                    }
                }
                ["pods", count] => m.pods = Some(int(count)?),
                ["metric", name, value] => {
                    m.metrics.insert(name.into(), num(value)?);
                }
                _ => return Err(err("unknown line")),
            }
        }
        Ok(m)
    }

    fn mark(&self, name: &str) -> Option<f64> {
        self.marks.get(name).copied()
    }

    /// The measured window: from the churn's start until the spans stopped coming.
    pub fn window_s(&self) -> Option<f64> {
        Some(self.mark("drained")? - self.mark("churn_start")?)
    }

    /// CPU seconds a process used over the window.
    pub fn cpu_s(&self, process: &str) -> Option<f64> {
        let (Some(start), Some(end)) = *self.cpu.get(process)? else {
            return None;
        };
        Some(end.checked_sub(start)? as f64 / self.clk_tck? as f64)
    }

    /// Requests a flow schema dispatched over the window (the API server was not restarted, so
    /// the counter only grows; a schema first seen at the end started from zero).
    pub fn api_requests(&self, schema: &str) -> Option<u64> {
        let (start, end) = *self.api.get(schema)?;
        end?.checked_sub(start.unwrap_or(0))
    }

    /// The last RSS sample before the churn started.
    pub fn rss_baseline_kb(&self) -> Option<u64> {
        let start = self.mark("churn_start")?;
        self.rss
            .iter()
            .filter(|(t, _)| *t <= start)
            .map(|s| s.1)
            .next_back()
    }

    pub fn rss_peak_kb(&self) -> Option<u64> {
        let (from, to) = (self.mark("churn_start")?, self.mark("drained")?);
        self.rss
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|s| s.1)
            .max()
    }

    /// The median of the samples taken after the churn ended, while the last spans drained: the
    /// memory the operator keeps for what it watches once the burst is over.
    pub fn rss_steady_kb(&self) -> Option<u64> {
        let (from, to) = (self.mark("churn_end")?, self.mark("drained")?);
        let mut after: Vec<u64> = self
            .rss
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|s| s.1)
            .collect();
        after.sort_unstable();
        after.get(after.len().checked_sub(1)? / 2).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "param size small
mark churn_start 100
rss 99 1000
rss 101 5000
rss 102 3000
mark churn_end 102
rss 103 2000
rss 104 2200
mark drained 110
rss 111 9000
clk_tck 100
cpu operator start 250
cpu operator end 400
api eventspan-load-list start 10
api eventspan-load-list end 25
api eventspan-load-patch end 7
pods 130
metric eventspan_spans_exported_total 1234
";

    #[test]
    fn figures_come_from_the_window() {
        let m = Measures::parse(SAMPLE).unwrap();
        assert_eq!(m.window_s(), Some(10.0));
        assert_eq!(m.cpu_s("operator"), Some(1.5));
        assert_eq!(m.cpu_s("kube-controller-manager"), None);
        assert_eq!(m.api_requests("eventspan-load-list"), Some(15));
        assert_eq!(m.api_requests("eventspan-load-patch"), Some(7));
        assert_eq!(m.rss_baseline_kb(), Some(1000));
        assert_eq!(m.rss_peak_kb(), Some(5000));
        // 3000, 2000, 2200 after the churn: the median, not the sample after the window.
        assert_eq!(m.rss_steady_kb(), Some(2200));
        assert_eq!(m.pods, Some(130));
        assert_eq!(m.params, vec![("size".into(), "small".into())]);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = Measures::parse("mark churn_start 1\ncpu operator middle 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "measurement line 2: want start or end: cpu operator middle 3"
        );
        assert!(Measures::parse("rss 1 lots").is_err());
        assert!(Measures::parse("what is this").is_err());
    }
}
