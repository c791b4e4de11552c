//! Writing a family of samples through the client crate's encoder: HELP and TYPE once, then each
//! sample with its labels.

use std::fmt;

use prometheus_client::encoding::{DescriptorEncoder, EncodeGaugeValue, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::export::{Buckets, Histogram};

/// Label names and values of one sample.
pub(super) type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A collector's encoder, writing one family per call.
pub(super) struct Families<'a>(pub DescriptorEncoder<'a>);

impl Families<'_> {
    /// `name` without `_total`: the encoder appends it.
    pub fn counter<'l>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'l>, u64)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in samples {
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&value, None)?;
        }
        Ok(())
    }

    pub fn gauge<'l, V: EncodeGaugeValue>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'l>, V)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            family.encode_family(&labels)?.encode_gauge(&value)?;
        }
        Ok(())
    }

    pub fn histogram<'l, 'h, B: Buckets + 'h>(
        &mut self,
        name: &str,
        help: &str,
        samples: impl IntoIterator<Item = (Labels<'l>, &'h Histogram<B>)>,
    ) -> fmt::Result {
        let mut family = self
            .0
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h) in samples {
            family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    h.sum_micros as f64 / 1e6,
                    h.count,
                    &buckets(h),
                    None,
                )?;
        }
        Ok(())
    }
}

/// A histogram's buckets as the encoder takes them: each bucket's own count (not cumulative),
/// the last one `+Inf`.
fn buckets<B: Buckets>(h: &Histogram<B>) -> Vec<(f64, u64)> {
    let mut below = 0;
    let mut out: Vec<(f64, u64)> = B::BOUNDS
        .iter()
        .zip(&h.cumulative)
        .map(|(bound, &cumulative)| {
            let n = cumulative.saturating_sub(below);
            below = cumulative;
            (*bound, n)
        })
        .collect();
    out.push((f64::INFINITY, h.count.saturating_sub(below)));
    out
}
