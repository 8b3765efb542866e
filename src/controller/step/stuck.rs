//! Stopping the Jobs of attempts the start timeout failed: each keeps the
//! outcome (annotation `stepwise.dev/start-failure`) and is suspended, so
//! the Job controller deletes its pod and the Job reads as that failure.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::api::{ANNOTATION_START_FAILURE, FIELD_MANAGER};
use crate::plan::step::StopJob;
use crate::{Error, KubeContext, Result};

/// Annotates and suspends each Job in `stop`; one already gone is fine.
/// Called before the status write that records their failures.
pub async fn stop(jobs_api: &Api<Job>, stop: &[StopJob]) -> Result<()> {
    for job in stop {
        let record = serde_json::to_string(&job.record).map_err(|source| Error::Serialize {
            what: "a start failure",
            source,
        })?;
        let patch = serde_json::json!({
            "metadata": { "annotations": { ANNOTATION_START_FAILURE: record } },
            "spec": { "suspend": true },
        });
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match jobs_api
            .patch(&job.name, &params, &Patch::Merge(&patch))
            .await
        {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other.context(|| format!("stopping Job {} after its start timeout", job.name))?;
            }
        }
    }
    Ok(())
}
