//! Cardholders.

use cardcore_domain::cardholder::NewCardholder;
use cardcore_domain::{AccountId, Cardholder, CardholderId, ExternalId, Phone};

use crate::{Ctx, Service, ServiceError, ServiceResult};

/// Input for a new cardholder, as the API received it.
#[derive(Debug, Clone)]
pub struct CreateCardholder {
    pub external_id: String,
    pub name: String,
    pub phone: Phone,
    pub email: Option<String>,
    pub date_of_birth: Option<chrono::NaiveDate>,
}

impl Service {
    /// Creates a cardholder and their default account.
    pub async fn create_cardholder(&self, ctx: &Ctx, input: CreateCardholder) -> ServiceResult<Cardholder> {
        let now = self.now();
        let valid = NewCardholder::validate(
            &input.external_id,
            &input.name,
            &input.phone,
            input.email.as_deref(),
            input.date_of_birth,
            now.date_naive(),
        )?;
        let cardholder = Cardholder {
            id: CardholderId::new(),
            tenant_id: ctx.tenant_id(),
            external_id: valid.external_id,
            name: valid.name,
            phone: valid.phone,
            email: valid.email,
            date_of_birth: valid.date_of_birth,
            default_account_id: AccountId::new(),
            created_at: now,
        };
        let mut tx = self.store.begin().await?;
        if !tx.insert_cardholder(&cardholder).await? {
            return Err(ServiceError::Conflict {
                code: "cardholder_exists",
                message: format!(
                    "a cardholder with external_id {:?} already exists; fetch it with GET /v1/cardholders?external_id=",
                    cardholder.external_id.as_str()
                ),
            });
        }
        let after = serde_json::json!({ "cardholder_id": cardholder.id, "external_id": cardholder.external_id });
        tx.insert_audit(&self.audit(ctx, None, "cardholder.created", None, None, Some(after)))
            .await?;
        tx.commit().await?;
        Ok(cardholder)
    }

    /// A cardholder of the caller's tenant.
    pub async fn cardholder(&self, ctx: &Ctx, id: CardholderId) -> ServiceResult<Cardholder> {
        self.store
            .cardholder(ctx.tenant_id(), id)
            .await?
            .ok_or(ServiceError::NotFound("cardholder"))
    }

    /// A cardholder by the tenant's own id for them.
    pub async fn cardholder_by_external_id(&self, ctx: &Ctx, external_id: &str) -> ServiceResult<Cardholder> {
        let ext = ExternalId::parse(external_id).map_err(|_| ServiceError::NotFound("cardholder"))?;
        self.store
            .cardholder_by_external_id(ctx.tenant_id(), &ext)
            .await?
            .ok_or(ServiceError::NotFound("cardholder"))
    }
}
