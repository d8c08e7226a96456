"""VQ-VAE-2 second stage: class-conditional PixelCNN priors over ``vqvae2_mnist``'s two code maps.

One run trains both priors: a gated PixelCNN over the 4x4 top map and one over the 7x7 bottom
map that also reads the whole top map (an embedding, residual blocks and a dense view of the
map, fed to every gated layer). ``config.prior.vqvae_workdir`` points at the first stage,
whose latest checkpoint is loaded, frozen and copied into this run's checkpoints. Samples:
top codes, then bottom codes given the top and the class, then the frozen decoder; sample i
asks for class i mod 10. ``--set=prior.sample_from=uniform`` evaluates uniform codes instead.

Command:
  python -m genjax.main --config=experiments/configs/vqvae2_mnist.py --workdir=runs/vqvae2_mnist
  python -m genjax.main --config=experiments/configs/vqvae2_prior_mnist.py \
    --config.prior.vqvae_workdir=runs/vqvae2_mnist --workdir=runs/vqvae2_prior_mnist
  python -m genjax.evaluate --workdir=runs/vqvae2_prior_mnist

Expected runtime: 0.5-0.6 steps/s at batch 128 measured over a 50-step run (joint NLL of the
  code maps 392 nats at step 10, 244 at step 50: 63 top + 181 bottom) on 2 CPU cores shared
  with a second training run: about 1.5 h for 3000 steps, plus the sample evaluations.
Measured: not yet measured (to compare with vqvae_prior_mnist's fid_lenet 52.8 [floor 1.07]
  on 10k samples).
"""

from genjax import config as genjax_config


def get_config():
  c = genjax_config.defaults()
  c.family = "vqvae2_prior"
  c.evals = "fid_lenet,kid_lenet,precision_recall_lenet,classifier_score_lenet,label_accuracy"
  # preprocess as in the first stage.
  c.data.update(name="mnist", preprocess="scale_01")
  c.model.conditional = True
  c.prior.update(vqvae_workdir="runs/vqvae2_mnist")
  c.pixelcnn.update(num_layers=8, features=64, kernel_size=3)
  c.optimizer.update(learning_rate=1e-3, grad_clip_norm=1.0)
  c.train.update(batch_size=128, num_steps=3_000)
  c.train.update(log_every=250, eval_every=1_000, checkpoint_every=1_000)
  c.eval.update(num_images=16)
  return c
