//! The hickory request handler: one question per message, answered from the zone by
//! [`Resolver`]; anything but a standard query is NOTIMP, a message without exactly
//! one question FORMERR.

use crate::metrics::Metrics;
use crate::resolve::{Answer, Resolver};
use crate::zone::SharedZone;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::RecordType;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

/// The EDNS version we speak.
const EDNS_VERSION: u8 = 0;
/// The smallest UDP payload we answer with (RFC 1035).
const MIN_UDP_PAYLOAD: u16 = 512;

/// Answers DNS requests from the shared zone.
#[derive(Debug, Clone)]
pub struct Handler {
    zone: SharedZone,
    resolver: Resolver,
    metrics: Metrics,
}

impl Handler {
    /// A handler of `zone`.
    pub fn new(zone: SharedZone, resolver: Resolver, metrics: Metrics) -> Self {
        Self {
            zone,
            resolver,
            metrics,
        }
    }

    /// The answer to `request`, and the question type (for metrics).
    fn answer(&self, request: &Request) -> (Answer, Option<RecordType>) {
        let m = &request.metadata;
        if m.message_type != MessageType::Query || m.op_code != OpCode::Query {
            return (code(ResponseCode::NotImp), None);
        }
        let [query] = request.queries.queries() else {
            return (code(ResponseCode::FormErr), None);
        };
        let qtype = query.query_type();
        let zone = self.zone.read();
        let answer = self.resolver.resolve(&zone, query.original().name(), qtype);
        (answer, Some(qtype))
    }
}

fn code(rcode: ResponseCode) -> Answer {
    let mut a = Answer::refused();
    a.rcode = rcode;
    a
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = request.edns.as_ref().map(|asked| {
            let mut e = Edns::new();
            e.set_max_payload(asked.max_payload().max(MIN_UDP_PAYLOAD));
            e.set_version(EDNS_VERSION);
            e
        });
        let (answer, qtype) = self.answer(request);
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.response_code = answer.rcode;
        metadata.authoritative = answer.authoritative;
        self.metrics.query(qtype, answer.rcode);
        tracing::debug!(
            id = request.metadata.id,
            src = %request.src(),
            ?qtype,
            rcode = %answer.rcode,
            answers = answer.answers.len(),
            "query"
        );
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &edns {
            builder.edns(e);
        }
        let response = builder.build(
            metadata,
            answer.answers.iter(),
            answer.authority.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                tracing::debug!(src = %request.src(), %error, "cannot send the answer");
                let mut failed = Metadata::response_from_request(&request.metadata);
                failed.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: failed,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_server::net::runtime::TokioTime;
    use hickory_server::net::xfer::Protocol;
    use hickory_server::net::NetError;
    use hickory_server::proto::op::{Message, Query};
    use hickory_server::proto::rr::{Name, Record};
    use hickory_server::proto::serialize::binary::BinEncoder;
    use hickory_server::zone_handler::MessageResponse;
    use persys_proto::dns::DnsRecord;
    use std::sync::{Arc, Mutex};

    /// Keeps the encoded answer.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    #[async_trait::async_trait]
    impl ResponseHandler for Capture {
        async fn send_response<'a>(
            &mut self,
            response: MessageResponse<
                '_,
                'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
                impl Iterator<Item = &'a Record> + Send + 'a,
            >,
        ) -> Result<ResponseInfo, NetError> {
            let mut bytes = Vec::new();
            let info = response.destructive_emit(&mut BinEncoder::new(&mut bytes))?;
            *self.0.lock().expect("lock") = bytes;
            Ok(info)
        }
    }

    fn handler() -> Handler {
        let zone = SharedZone::new("cluster.local.dev");
        let rec = serde_json::to_vec(&DnsRecord {
            host: "10.0.0.1".into(),
            port: Some(8080),
            ttl: 30,
        })
        .expect("json");
        zone.write().replace(
            [("/skydns/dev/local/cluster/web/a-8080", rec.as_slice())],
            3,
        );
        Handler::new(
            zone,
            Resolver::new("cluster.local.dev").expect("resolver"),
            Metrics::new(),
        )
    }

    async fn ask(h: &Handler, build: impl FnOnce(&mut Message)) -> (Message, ResponseInfo) {
        let mut m = Message::query();
        m.metadata.id = 77;
        build(&mut m);
        let raw = m.to_vec().expect("encode");
        let request =
            Request::from_bytes(raw, "127.0.0.1:5000".parse().expect("addr"), Protocol::Udp)
                .expect("request");
        let capture = Capture::default();
        let info = h
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let bytes = capture.0.lock().expect("lock").clone();
        (Message::from_vec(&bytes).expect("decode"), info)
    }

    fn question(name: &str, t: RecordType) -> Query {
        Query::query(Name::from_ascii(name).expect("name"), t)
    }

    #[tokio::test]
    async fn a_query_is_answered_with_its_id_and_the_aa_bit() {
        let h = handler();
        let (m, info) = ask(&h, |m| {
            m.add_query(question("web.cluster.local.dev.", RecordType::SRV));
        })
        .await;
        assert_eq!(m.metadata.id, 77);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.additionals.len(), 1);
        assert_eq!(info.counts().answers, 1);
        assert!(h
            .metrics
            .render()
            .contains(r#"rcode="NOERROR",type="SRV"} 1"#));
    }

    #[tokio::test]
    async fn not_a_single_standard_query_is_refused_with_the_right_code() {
        let h = handler();
        let (m, _) = ask(&h, |m| {
            m.add_query(question("web.cluster.local.dev.", RecordType::A));
            m.add_query(question("x.cluster.local.dev.", RecordType::A));
        })
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let (m, _) = ask(&h, |m| {
            m.metadata.op_code = OpCode::Status;
            m.add_query(question("web.cluster.local.dev.", RecordType::A));
        })
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
        let (m, _) = ask(&h, |m| {
            m.add_query(question("example.org.", RecordType::A));
        })
        .await;
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(!m.metadata.authoritative);
    }
}
