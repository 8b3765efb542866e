//! Deleting the Jobs of attempts the planner failed for `StartTimeout`.

use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::DeleteParams;

use crate::{KubeContext, Result};

/// Deletes each Job in `names`; one already gone is fine. Called only after
/// the status recording their failures was written.
pub async fn delete(jobs_api: &Api<Job>, names: &[String]) -> Result<()> {
    // Background: the Job goes at once and the garbage collector removes its
    // pod. Its container never ran, so there is no work to wait for
    // (Foreground would only keep the Job, read as running, a while longer).
    let params = DeleteParams::background();
    for name in names {
        match jobs_api.delete(name, &params).await {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other.context(|| format!("deleting Job {name} after its start timeout"))?;
            }
        }
    }
    Ok(())
}
