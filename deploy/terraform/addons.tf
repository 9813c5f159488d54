# Cluster add-ons the manifests in deploy/k8s rely on, as Helm releases.
provider "helm" {
  kubernetes {
    host                   = module.eks.cluster_endpoint
    cluster_ca_certificate = base64decode(module.eks.cluster_certificate_authority_data)
    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.eks.cluster_name]
    }
  }
}

locals {
  system_placement = {
    nodeSelector = { workload = "system" }
    tolerations  = [{ key = "CriticalAddonsOnly", operator = "Exists" }]
  }
}

# Istio: the same mesh as deploy/istio/istio-operator.yaml (CNI plugin, metrics merging).
resource "helm_release" "istio_base" {
  name             = "istio-base"
  repository       = "https://istio-release.storage.googleapis.com/charts"
  chart            = "base"
  version          = "1.24.2"
  namespace        = "istio-system"
  create_namespace = true
}

resource "helm_release" "istio_cni" {
  name       = "istio-cni"
  repository = "https://istio-release.storage.googleapis.com/charts"
  chart      = "cni"
  version    = "1.24.2"
  namespace  = "kube-system"
  depends_on = [helm_release.istio_base]
}

resource "helm_release" "istiod" {
  name       = "istiod"
  repository = "https://istio-release.storage.googleapis.com/charts"
  chart      = "istiod"
  version    = "1.24.2"
  namespace  = "istio-system"
  values = [yamlencode({
    # Native sidecars (Kubernetes 1.29+): Jobs in the mesh finish when their container
    # exits; Istio 1.24 does not turn this on by itself.
    pilot = merge(local.system_placement, {
      cni = { enabled = true }
      env = { ENABLE_NATIVE_SIDECARS = "true" }
    })
    meshConfig = { enablePrometheusMerge = true }
    global     = { meshID = "crypto-lakehouse", network = "crypto-lakehouse-network" }
  })]
  depends_on = [helm_release.istio_cni]
}

# The ingress gateway that deploy/k8s/base/istio/gateway.yaml binds to: a LoadBalancer
# (an NLB) in istio-system, labelled istio=ingressgateway like istioctl's default one.
resource "helm_release" "istio_ingressgateway" {
  name       = "istio-ingressgateway"
  repository = "https://istio-release.storage.googleapis.com/charts"
  chart      = "gateway"
  version    = "1.24.2"
  namespace  = "istio-system"
  values = [yamlencode({
    labels = { app = "istio-ingressgateway", istio = "ingressgateway" }
    service = {
      type        = "LoadBalancer"
      annotations = { "service.beta.kubernetes.io/aws-load-balancer-type" = "nlb" }
    }
  })]
  depends_on = [helm_release.istiod]
}

# The resource metrics API (CPU, memory) that both HorizontalPodAutoscalers read: EKS does
# not install it, and without it the HPAs never scale.
resource "helm_release" "metrics_server" {
  name       = "metrics-server"
  repository = "https://kubernetes-sigs.github.io/metrics-server"
  chart      = "metrics-server"
  version    = "3.12.2"
  namespace  = "kube-system"
  values     = [yamlencode(local.system_placement)]
}

resource "helm_release" "cloudnative_pg" {
  name             = "cnpg"
  repository       = "https://cloudnative-pg.github.io/charts"
  chart            = "cloudnative-pg"
  version          = "0.23.0"
  namespace        = "cnpg-system"
  create_namespace = true
  values           = [yamlencode(local.system_placement)]
}

# MinIO's drives: LVM volumes on the storage nodes' NVMe (StorageClass `local-nvme`).
resource "helm_release" "lvm_localpv" {
  name             = "lvm-localpv"
  repository       = "https://openebs.github.io/lvm-localpv"
  chart            = "lvm-localpv"
  version          = "1.6.2"
  namespace        = "openebs"
  create_namespace = true
  values = [yamlencode({
    lvmNode = {
      nodeSelector = { workload = "storage" }
      tolerations  = [{ key = "workload", operator = "Equal", value = "storage", effect = "NoSchedule" }]
    }
  })]
}

# kube_node_status_condition for the KubernetesNodeNotReady alert.
resource "helm_release" "kube_state_metrics" {
  name       = "kube-state-metrics"
  repository = "https://prometheus-community.github.io/helm-charts"
  chart      = "kube-state-metrics"
  version    = "5.27.0"
  namespace  = "monitoring"
  # Created before the manifests label it for Pod Security (kubectl apply merges labels).
  create_namespace = true
  values = [yamlencode({
    fullnameOverride = "kube-state-metrics"
    nodeSelector     = { workload = "general" }
  })]
}

resource "helm_release" "argocd" {
  name             = "argocd"
  repository       = "https://argoproj.github.io/argo-helm"
  chart            = "argo-cd"
  version          = "7.7.11"
  namespace        = "argocd"
  create_namespace = true
  values = [yamlencode({
    global = local.system_placement
    # Argo CD knows no health for CloudNativePG clusters: without one a Cluster counts as
    # healthy at once, and sync wave 1 (the migration Job) starts before PostgreSQL runs.
    configs = {
      cm = {
        "resource.customizations.health.postgresql.cnpg.io_Cluster" = <<-EOT
          hs = { status = "Progressing", message = "waiting for the first status" }
          if obj.status ~= nil and obj.status.phase ~= nil then
            hs.message = obj.status.phase
            if obj.status.phase == "Cluster in healthy state" then
              hs.status = "Healthy"
            end
          end
          return hs
        EOT
      }
    }
  })]
}

# External Secrets Operator: fills every Secret in deploy/k8s/components/external-secrets
# from AWS Secrets Manager. Its controller's service account assumes an IAM role (IRSA)
# that may read only the entries under `crypto-lakehouse/`.
module "external_secrets_irsa" {
  source  = "terraform-aws-modules/iam/aws//modules/iam-role-for-service-accounts-eks"
  version = "~> 5.48"

  role_name                      = "${local.name}-external-secrets"
  attach_external_secrets_policy = true
  external_secrets_secrets_manager_arns = [
    "arn:aws:secretsmanager:${var.region}:${data.aws_caller_identity.current.account_id}:secret:crypto-lakehouse/*",
  ]

  oidc_providers = {
    main = {
      provider_arn               = module.eks.oidc_provider_arn
      namespace_service_accounts = ["external-secrets:external-secrets"]
    }
  }

  tags = local.common_tags
}

data "aws_caller_identity" "current" {}

resource "helm_release" "external_secrets" {
  name             = "external-secrets"
  repository       = "https://charts.external-secrets.io"
  chart            = "external-secrets"
  version          = "0.10.7"
  namespace        = "external-secrets"
  create_namespace = true
  values = [yamlencode(merge(local.system_placement, {
    installCRDs = true
    serviceAccount = {
      name        = "external-secrets"
      annotations = { "eks.amazonaws.com/role-arn" = module.external_secrets_irsa.iam_role_arn }
    }
  }))]
}
