//! slack-morphism's API calls over our own reqwest client (rustls with the ring provider), instead
//! of the crate's hyper stack: one HTTP client in the binary, and the API base comes from
//! `slack.api_url`. No retries here — the alert outbox decides what to retry and when.

use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use slack_morphism::errors::*;
use slack_morphism::multipart_form::FileMultipartData;
use slack_morphism::prelude::*;
use slack_morphism::{
    ClientResult, SlackClientApiCallContext, SlackClientHttpConnector, SlackEnvelopeMessage,
};
use url::Url;

#[derive(Clone, Debug)]
pub struct ReqwestConnector {
    client: reqwest::Client,
    /// Without a trailing slash; method names are appended as `{base}/{method}`.
    api_base: String,
}

impl ReqwestConnector {
    pub fn new(client: reqwest::Client, api_url: &Url) -> Self {
        Self { client, api_base: api_url.as_str().trim_end_matches('/').to_owned() }
    }

    async fn send<RS>(
        &self,
        request: reqwest::RequestBuilder,
        token: Option<&SlackApiToken>,
    ) -> ClientResult<RS>
    where
        RS: for<'de> serde::Deserialize<'de>,
    {
        let request = match token {
            Some(t) => request.bearer_auth(t.token_value.value()),
            None => request,
        };
        let response = request.send().await.map_err(protocol_error)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let is_json = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let body = response.text().await.map_err(protocol_error)?;
        match status {
            StatusCode::OK if is_json => {
                let envelope: SlackEnvelopeMessage =
                    serde_json::from_str(&body).map_err(|e| map_serde_error(e, Some(&body)))?;
                match envelope.error {
                    None => serde_json::from_str(&body).map_err(|e| map_serde_error(e, Some(&body))),
                    Some(code) => Err(SlackClientError::ApiError(
                        SlackClientApiError::new(code)
                            .opt_warnings(envelope.warnings)
                            .with_http_response_body(body),
                    )),
                }
            }
            // The upload URL answers 200 with a plain-text body.
            StatusCode::OK | StatusCode::NO_CONTENT => {
                serde_json::from_str("{}").map_err(|e| map_serde_error(e, None))
            }
            StatusCode::TOO_MANY_REQUESTS => Err(SlackClientError::RateLimitError(
                SlackRateLimitError::new().opt_retry_after(retry_after).with_http_response_body(body),
            )),
            _ => Err(SlackClientError::HttpError(
                SlackClientHttpError::new(status).with_http_response_body(body),
            )),
        }
    }
}

fn protocol_error(e: reqwest::Error) -> SlackClientError {
    SlackClientError::HttpProtocolError(SlackClientHttpProtocolError::new().with_cause(Box::new(e)))
}

fn unsupported(what: &str) -> SlackClientError {
    SlackClientError::SystemError(
        SlackClientSystemError::new().with_message(format!("{what} is not used by vigil")),
    )
}

impl SlackClientHttpConnector for ReqwestConnector {
    fn create_method_uri_path(&self, method_relative_uri: &str) -> ClientResult<Url> {
        Ok(format!("{}/{}", self.api_base, method_relative_uri).parse()?)
    }

    fn http_get_uri<'a, RS>(
        &'a self,
        full_uri: Url,
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        async move { self.send(self.client.get(full_uri), context.token).await }.boxed()
    }

    fn http_get_with_client_secret<'a, RS>(
        &'a self,
        _full_uri: Url,
        _client_id: &'a SlackClientId,
        _client_secret: &'a SlackClientSecret,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        std::future::ready(Err(unsupported("OAuth"))).boxed()
    }

    fn http_post_uri<'a, RQ, RS>(
        &'a self,
        full_uri: Url,
        request_body: &'a RQ,
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RQ: serde::ser::Serialize + Send + Sync,
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        async move {
            let body = serde_json::to_vec(request_body).map_err(|e| map_serde_error(e, None))?;
            let request =
                self.client.post(full_uri).header(CONTENT_TYPE, "application/json; charset=utf-8").body(body);
            self.send(request, context.token).await
        }
        .boxed()
    }

    fn http_post_uri_multipart_form<'a, 'p, RS, PT, TS>(
        &'a self,
        _full_uri: Url,
        _file: Option<FileMultipartData<'p>>,
        _params: &'p PT,
        _context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
        PT: std::iter::IntoIterator<Item = (&'p str, Option<TS>)> + Clone,
        TS: AsRef<str> + 'p + Send,
    {
        // Only the retired `files.upload` posts multipart forms.
        std::future::ready(Err(unsupported("multipart upload"))).boxed()
    }

    fn http_post_uri_binary<'a, 'p, RS>(
        &'a self,
        full_uri: Url,
        content_type: String,
        data: &'a [u8],
        context: SlackClientApiCallContext<'a>,
    ) -> BoxFuture<'a, ClientResult<RS>>
    where
        RS: for<'de> serde::de::Deserialize<'de> + Send + 'a,
    {
        // Only the upload of a file's bytes posts binary, to the URL `files.getUploadURLExternal`
        // handed out (another host, authorised by the URL itself): the bot token stays home.
        let _ = context;
        async move {
            let request = self.client.post(full_uri).header(CONTENT_TYPE, content_type).body(data.to_vec());
            self.send(request, None).await
        }
        .boxed()
    }
}
