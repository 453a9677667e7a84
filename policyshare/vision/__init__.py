"""The vision side: the same trunk classifies images and guides their generation.

Background (R. Memisevic, "Why does classification help generation and not the other way
around?", MIT Deep Learning Workshop 2016): Gatys et al. 2015 synthesise textures by matching the Gram matrices of
a classification network; Berger & Memisevic 2016 (arXiv 1606.01286) add Gramians between
features and spatially shifted copies of themselves; classifier guidance (Dhariwal & Nichol
2021) steers a diffusion model with a classifier's gradient. Here the network that classifies
and guides is a policyshare :class:`~policyshare.trunks.Trunk` — random, trained on RL tasks,
trained by classification, or pretrained generatively as a denoising autoencoder.

Modules, in data-flow order:

* :mod:`~policyshare.vision.config` — the typed ``configs/vision.yaml``.
* :mod:`~policyshare.vision.data` — images with no download (scikit-learn digits, scikit-image
  textures, scikit-learn sample photos, the user's files and folders, MNIST / CIFAR-10 from
  local standard-format files) and PNG writing.
* :mod:`~policyshare.vision.inputs` — how images enter a trunk (:class:`ImageInput`) and how a
  trunk is named on the command line (``random``, ``random:SPEC``, ``zoo:ENV_ID[@s<seed>]``, a trunk file).
* :mod:`~policyshare.vision.probe` — classifier heads on a trunk: linear probe, fine-tuning and
  classification pretraining.
* :mod:`~policyshare.vision.autoencoder` — generative pretraining of a trunk as a denoising
  autoencoder (optionally with zero-bias TRec/TLin units).
* :mod:`~policyshare.vision.texture` — Gram, shifted-Gram and mirrored-Gram losses and texture
  synthesis.
* :mod:`~policyshare.vision.style` — style transfer: content features on a deeper layer plus Gram
  and shifted-Gram style terms (Gatys et al. 2016; Berger & Memisevic 2016).
* :mod:`~policyshare.vision.diffusion` — a small DDPM prior on the digits, trained once and
  cached.
* :mod:`~policyshare.vision.guidance` — the noisy-image classifier on a trunk and classifier
  guidance.
* :mod:`~policyshare.vision.evaluators` — the held-out judges: an ensemble of texture
  evaluators of different architectures (validated per texture) and an independent SVM for
  generated digits.
* :mod:`~policyshare.vision.diversity` — the held-out feature network, the diversity of samples and
  their precision and recall (Kynkäänniemi et al. 2019).
* :mod:`~policyshare.vision.scales` — the guidance-scale sweep: accuracy–diversity curves, best
  scale, accuracy at matched diversity.
* :mod:`~policyshare.vision.fewshot` — few-label probes of trunks and of the diffusion denoiser.
* :mod:`~policyshare.vision.battles` — generator battles (Im et al. 2016's r_test / r_sample).
* :mod:`~policyshare.vision.seeds` — intervals over seeds, paired differences, verdicts.
* :mod:`~policyshare.vision.thesis` — the thesis in both directions over seeds (disjoint classes),
  and :mod:`~policyshare.vision.thesis_report` — its report sections and figure.
* :mod:`~policyshare.vision.steps` — a comparison's shared context (data, judge, cached prior,
  texture crops) and the per-trunk steps: linear probe, guided and unguided generation.
* :mod:`~policyshare.vision.texture_compare` — texture synthesis per trunk scored by the
  validated judges, the texture reference rows, and the texture checks run before training;
  :mod:`~policyshare.vision.texture_report` — their report cells, legend and PNG gallery.
* :mod:`~policyshare.vision.seed_pool` — the thesis's seeds side by side in worker processes.
* :mod:`~policyshare.vision.compare_report` — the thesis table and ``report.md``.
* :mod:`~policyshare.vision.compare` — ``vision compare``: checks, the run folder, the thesis
  table over trunks.
* :mod:`~policyshare.vision.cli` — ``policyshare vision probe|pretrain|texture|transfer|generate|compare``.
"""

from __future__ import annotations
